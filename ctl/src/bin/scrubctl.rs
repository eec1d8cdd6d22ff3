//! scrubctl: the operator's command line for a running scrubd.
//!
//! Exit codes: 0 ok; 1 the daemon returned an error (or the conversation broke off, or a file
//! could not be written); 2 usage; 3 cannot connect to the socket.

#![forbid(unsafe_code)]

use clap::{ArgGroup, Args, Parser, Subcommand};
use ctl::client::{code_name, Client, ClientError};
use ctl::protocol::{
    Command, Done, FlowspecReport, HealthReport, LatencyReport, ListReport, MetricsReport,
    OffendersReport, PortsReport, RatelimitReport, ReloadReport, StatsReport, StatusReport,
    SyncookieReport, MAX_REQUEST_BYTES,
};
use ctl::render;
use ctl::server::DEFAULT_SOCKET_PATH;
use serde::de::DeserializeOwned;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "scrubctl",
    version,
    about = "Inspect and steer a running scrubd over its control socket",
    after_help = "Examples:\n  scrubctl status\n  scrubctl --socket /tmp/scrubd.sock stats --json\n  scrubctl block add 203.0.113.0/24 --ttl 600\n\nExit codes: 0 ok, 1 daemon error, 2 usage, 3 cannot connect."
)]
struct Cli {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH", env = "SCRUBD_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// Print the reply's data as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Daemon version, uptime, ports, active stages and rule generation.
    #[command(after_help = "Example:\n  scrubctl status")]
    Status,
    /// Per-port verdict counters and rates, drops by reason, workers, stage counters.
    #[command(after_help = "Example:\n  scrubctl stats --json | jq .total")]
    Stats,
    /// Forwarding latency percentiles per worker, merged and recent.
    #[command(after_help = "Example:\n  scrubctl latency --hgrm /tmp/scrubd.hgrm --reset")]
    Latency {
        /// Clear the since-start histograms after reading them.
        #[arg(long)]
        reset: bool,
        /// Also fetch the merged histogram and write it as HdrHistogram .hgrm text to FILE.
        #[arg(long, value_name = "FILE")]
        hgrm: Option<PathBuf>,
    },
    /// Live view of stats and rates, redrawn every interval (plain text when not a terminal).
    #[command(after_help = "Example:\n  scrubctl top --interval 2")]
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Prometheus text exposition of every counter and latency quantile.
    #[command(after_help = "Example:\n  scrubctl metrics | grep scrubd_dropped")]
    Metrics,
    /// Signature rules and ACLs.
    #[command(subcommand, after_help = "Example:\n  scrubctl rules reload")]
    Rules(RulesCmd),
    /// Dynamic block list: drop everything from these prefixes.
    #[command(
        subcommand,
        after_help = "Example:\n  scrubctl block add 203.0.113.0/24 --ttl 600"
    )]
    Block(ListCmd),
    /// Dynamic allow list: never scrub these prefixes.
    #[command(
        subcommand,
        after_help = "Example:\n  scrubctl allow add 192.0.2.10/32"
    )]
    Allow(ListCmd),
    /// Per-source rate-limit classes.
    #[command(
        subcommand,
        after_help = "Example:\n  scrubctl ratelimit set icmp --rate 100 --burst 200"
    )]
    Ratelimit(RatelimitCmd),
    /// SYN cookie state.
    #[command(subcommand, after_help = "Example:\n  scrubctl syncookie rotate")]
    Syncookie(SyncookieCmd),
    /// NIC ports: link, queues, ethdev and extended statistics.
    #[command(after_help = "Example:\n  scrubctl ports")]
    Ports,
    /// Heaviest dropped sources and destinations (estimated counts).
    #[command(
        after_help = "Example:\n  scrubctl offenders --limit 20 --reason rate_limited.udp_reflection"
    )]
    Offenders {
        /// Entries per side (daemon default 10).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only this drop reason, named as in `stats`.
        #[arg(long, value_name = "NAME")]
        reason: Option<String>,
    },
    /// BGP FlowSpec rules received through the BGP bridge.
    #[command(subcommand, after_help = "Example:\n  scrubctl flowspec list")]
    Flowspec(FlowspecCmd),
    /// Whether this box should attract traffic (workers polling, ports up, not stopping);
    /// exit code 1 when it should not.
    #[command(after_help = "Example:\n  scrubctl health")]
    Health,
    /// Run as ExaBGP's `process`: FlowSpec routes from its JSON on stdin go to scrubd, and the
    /// protected prefixes are announced on stdout only while scrubd is healthy.
    #[command(
        name = "bgp-bridge",
        after_help = "ExaBGP configuration:\n  process scrubd {\n    run /usr/bin/scrubctl --socket /run/scrubd/scrubd.sock bgp-bridge --announce 203.0.113.0/24;\n    encoder json;\n  }\n  neighbor 192.0.2.1 { ... family { ipv4 flow; ipv4 unicast; }\n    api { processes [ scrubd ]; receive { parsed; update; } neighbor-changes; } }\n\nWithdrawal after scrubd stops or stalls: within --interval-ms + --timeout-ms\n(plus scrubd's stall limit, 10 stats intervals and at least 1 s, for a stalled worker)."
    )]
    BgpBridge {
        /// A prefix to announce while healthy (repeat for several).
        #[arg(long, value_name = "PREFIX", required = true)]
        announce: Vec<String>,
        /// Next hop of the announcements, as ExaBGP takes it.
        #[arg(long, default_value = "self")]
        next_hop: String,
        /// Milliseconds between health checks.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        interval_ms: u64,
        /// Milliseconds a health check may take before the box counts as unhealthy.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
        timeout_ms: u64,
    },
    /// Stop the daemon (it drains, prints its summary and exits).
    #[command(after_help = "Example:\n  scrubctl shutdown")]
    Shutdown,
}

#[derive(Subcommand)]
enum FlowspecCmd {
    /// Active rules in evaluation order, with the peer they came from, and recent refusals.
    #[command(after_help = "Example:\n  scrubctl flowspec list")]
    List,
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Re-read signature rules and ACLs from the config file and publish them atomically.
    #[command(after_help = "Example:\n  scrubctl rules reload")]
    Reload,
}

#[derive(Subcommand)]
enum ListCmd {
    /// Add a prefix, or every prefix of a file in one request (optionally expiring).
    #[command(
        after_help = "Examples:\n  scrubctl block add 203.0.113.0/24 --ttl 600\n  scrubctl block add -f attackers.txt --ttl 3600\n\nFILE: one prefix per line, `#` starts a comment, blank lines ignored; `-` reads stdin.\nThe whole file is one request and one table update; a bad line is reported as FILE:LINE\nand nothing is added."
    )]
    #[command(group(ArgGroup::new("what").required(true).args(["prefix", "file"])))]
    Add {
        /// IPv4 or IPv6 prefix, e.g. 203.0.113.0/24 or 2001:db8::/32.
        prefix: Option<String>,
        /// Add every prefix listed in FILE at once.
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Remove it again after this many seconds.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
    },
    /// Remove a prefix added with `add`.
    #[command(after_help = "Example:\n  scrubctl block del 203.0.113.0/24")]
    Del { prefix: String },
    /// Show entries from the config file and dynamic ones with their expiry.
    #[command(after_help = "Example:\n  scrubctl block list")]
    List,
}

#[derive(Subcommand)]
enum RatelimitCmd {
    /// Classes with their limits and pass/drop counters.
    #[command(after_help = "Example:\n  scrubctl ratelimit show")]
    Show,
    /// Change or remove the limit of one class.
    #[command(
        after_help = "Examples:\n  scrubctl ratelimit set udp_reflection --rate 1000 --burst 2000 --mode fixed_window\n  scrubctl ratelimit set icmp --off"
    )]
    Set(RatelimitSet),
}

#[derive(Args)]
#[command(group(ArgGroup::new("limit").required(true).args(["rate", "off"])))]
struct RatelimitSet {
    /// udp_reflection, icmp, tcp_syn, ip_fragment or other.
    class: String,
    /// Packets per second per source.
    #[arg(long, value_name = "PPS", requires = "burst")]
    rate: Option<u64>,
    /// Packets a source may send at once above the rate.
    #[arg(long, value_name = "N", requires = "rate")]
    burst: Option<u64>,
    /// How the rate is enforced (daemon default token_bucket).
    #[arg(long, requires = "rate", value_parser = ["token_bucket", "fixed_window"])]
    mode: Option<String>,
    /// Remove the limit of this class.
    #[arg(long, conflicts_with_all = ["rate", "burst", "mode"])]
    off: bool,
}

#[derive(Subcommand)]
enum SyncookieCmd {
    /// Mode, protected prefixes, secret generations and counters.
    #[command(after_help = "Example:\n  scrubctl syncookie status")]
    Status,
    /// Start a new secret generation now (cookies of the previous one stay valid).
    #[command(after_help = "Example:\n  scrubctl syncookie rotate")]
    Rotate,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err("must be a number of seconds greater than 0".into()),
    }
}

/// Why scrubctl stops early; mapped to the exit code.
enum Fail {
    Client(ClientError),
    Local(String),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail::Client(e)
    }
}

type Out = Result<(), Fail>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Client(ClientError::Connect { path, source })) => {
            eprintln!(
                "scrubctl: cannot connect to scrubd at {}: {source}\n  is scrubd running? point at its control socket with --socket PATH or SCRUBD_SOCKET",
                path.display()
            );
            ExitCode::from(3)
        }
        Err(Fail::Client(ClientError::Daemon { code, message })) => {
            eprintln!("scrubctl: daemon error {}: {message}", code_name(code));
            ExitCode::from(1)
        }
        Err(Fail::Client(e)) => {
            eprintln!("scrubctl: {e}");
            ExitCode::from(1)
        }
        Err(Fail::Local(msg)) => {
            eprintln!("scrubctl: {msg}");
            ExitCode::from(1)
        }
    }
}

fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`scrubctl stats | head`) is not an error worth reporting.
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

fn print_json(v: &serde_json::Value) {
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    ));
}

/// Call, then print as JSON or through `human` applied to the typed reply.
fn show<T: DeserializeOwned>(
    client: &mut Client,
    json: bool,
    cmd: Command,
    human: fn(&T) -> String,
) -> Out {
    let v = client.call(cmd)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let r: T = serde_json::from_value(v)
        .map_err(|e| Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}"))))?;
    print(&human(&r));
    Ok(())
}

fn list_cmd(c: &ListCmd, block: bool) -> Command {
    match (c, block) {
        (ListCmd::Add { prefix, ttl, .. }, true) => Command::BlockAdd {
            prefix: prefix.clone().unwrap_or_default(),
            ttl_s: *ttl,
        },
        (ListCmd::Add { prefix, ttl, .. }, false) => Command::AllowAdd {
            prefix: prefix.clone().unwrap_or_default(),
            ttl_s: *ttl,
        },
        (ListCmd::Del { prefix }, true) => Command::BlockDel {
            prefix: prefix.clone(),
        },
        (ListCmd::Del { prefix }, false) => Command::AllowDel {
            prefix: prefix.clone(),
        },
        (ListCmd::List, true) => Command::BlockList,
        (ListCmd::List, false) => Command::AllowList,
    }
}

/// The prefixes of a list file with their line numbers: `#` to end of line is a comment, blank
/// lines are skipped (the same format as `pipeline.acl.deny_file`).
fn read_list_file(file: &Path) -> Result<Vec<(usize, String)>, Fail> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Fail::Local(format!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Fail::Local(format!("cannot read {}: {e}", file.display())))?
    };
    Ok(parse_list(&text))
}

fn parse_list(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
            (!content.is_empty()).then(|| (i + 1, content.to_string()))
        })
        .collect()
}

/// Splits `entries` into requests under the daemon's line cap: one request for any list of
/// up to 100,000 prefixes, more only for a larger file.
fn chunks(entries: &[(usize, String)]) -> Vec<&[(usize, String)]> {
    // Room for the envelope (`{"v":1,"cmd":"block_add_many","args":{...,"ttl_s":N}}`).
    let budget = MAX_REQUEST_BYTES - 256;
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (_, p)) in entries.iter().enumerate() {
        // Quotes, comma, and JSON escaping of anything odd in the line (at most 6 bytes each).
        let cost = 3 + p.len() * if p.is_ascii() { 1 } else { 6 };
        if size + cost > budget && i > start {
            out.push(&entries[start..i]);
            (start, size) = (i, 0);
        }
        size += cost;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

/// `block add -f FILE` / `allow add -f FILE`: the file's prefixes in one request (or a few,
/// for a file over the request cap). A rejected prefix is reported as FILE:LINE.
fn add_file(c: &mut Client, json: bool, file: &Path, ttl: Option<u64>, block: bool) -> Out {
    let entries = read_list_file(file)?;
    if entries.is_empty() {
        return Err(Fail::Local(format!(
            "{}: no prefixes in it",
            file.display()
        )));
    }
    let mut replies = Vec::new();
    for chunk in chunks(&entries) {
        let prefixes: Vec<String> = chunk.iter().map(|(_, p)| p.clone()).collect();
        let cmd = if block {
            Command::BlockAddMany {
                prefixes,
                ttl_s: ttl,
            }
        } else {
            Command::AllowAddMany {
                prefixes,
                ttl_s: ttl,
            }
        };
        match c.call(cmd) {
            Ok(v) => replies.push(v),
            Err(ClientError::Daemon { code, message }) => {
                return Err(Fail::Client(ClientError::Daemon {
                    code,
                    message: locate(&message, file, chunk),
                }))
            }
            Err(e) => return Err(e.into()),
        }
    }
    for v in replies {
        if json {
            print_json(&v);
        } else {
            let d: Done = serde_json::from_value(v).map_err(|e| {
                Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}")))
            })?;
            print(&render::done(&d));
        }
    }
    Ok(())
}

/// Turns the daemon's `prefixes[i] ...` into `FILE:LINE: ...` for the entry it names.
fn locate(message: &str, file: &Path, chunk: &[(usize, String)]) -> String {
    let line = message
        .strip_prefix("prefixes[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, rest)| Some((chunk.get(i.parse::<usize>().ok()?)?.0, rest)));
    match line {
        Some((line, rest)) => format!("{}:{line}:{rest}", file.display()),
        None => message.to_string(),
    }
}

fn run(cli: &Cli) -> Out {
    if let Cmd::BgpBridge {
        announce,
        next_hop,
        interval_ms,
        timeout_ms,
    } = &cli.cmd
    {
        // No connection up front: the bridge outlives scrubd restarts.
        let cfg = ctl::bgp::BridgeConfig {
            socket: cli.socket.clone(),
            announce: announce.clone(),
            next_hop: next_hop.clone(),
            interval: Duration::from_millis(*interval_ms),
            timeout: Duration::from_millis(*timeout_ms),
        };
        let stdin = std::io::BufReader::new(std::io::stdin());
        ctl::bgp::run(&cfg, stdin, &mut std::io::stdout());
        return Ok(());
    }
    let mut client = Client::connect(&cli.socket)?;
    let json = cli.json;
    let c = &mut client;
    match &cli.cmd {
        Cmd::Status => show::<StatusReport>(c, json, Command::Status, render::status),
        Cmd::Stats => show::<StatsReport>(c, json, Command::Stats, render::stats),
        Cmd::Latency { reset, hgrm } => latency(c, json, *reset, hgrm.as_deref()),
        Cmd::Top { interval, count } => top(c, json, *interval, *count),
        Cmd::Metrics => {
            let v = c.call(Command::Metrics)?;
            if json {
                print_json(&v);
            } else {
                let m: MetricsReport = serde_json::from_value(v).map_err(|e| {
                    Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}")))
                })?;
                print(&m.text);
            }
            Ok(())
        }
        Cmd::Rules(RulesCmd::Reload) => {
            show::<ReloadReport>(c, json, Command::RulesReload, render::reload)
        }
        Cmd::Block(ListCmd::List) => show::<ListReport>(c, json, Command::BlockList, render::list),
        Cmd::Allow(ListCmd::List) => show::<ListReport>(c, json, Command::AllowList, render::list),
        Cmd::Block(ListCmd::Add {
            file: Some(f), ttl, ..
        }) => add_file(c, json, f, *ttl, true),
        Cmd::Allow(ListCmd::Add {
            file: Some(f), ttl, ..
        }) => add_file(c, json, f, *ttl, false),
        Cmd::Block(l) => show::<Done>(c, json, list_cmd(l, true), render::done),
        Cmd::Allow(l) => show::<Done>(c, json, list_cmd(l, false), render::done),
        Cmd::Ratelimit(RatelimitCmd::Show) => {
            show::<RatelimitReport>(c, json, Command::RatelimitShow, render::ratelimit)
        }
        Cmd::Ratelimit(RatelimitCmd::Set(s)) => show::<Done>(
            c,
            json,
            Command::RatelimitSet {
                class: s.class.clone(),
                rate: s.rate,
                burst: s.burst,
                mode: s.mode.clone(),
                off: s.off,
            },
            render::done,
        ),
        Cmd::Syncookie(SyncookieCmd::Status) => {
            show::<SyncookieReport>(c, json, Command::SyncookieStatus, render::syncookie)
        }
        Cmd::Syncookie(SyncookieCmd::Rotate) => {
            show::<Done>(c, json, Command::SyncookieRotate, render::done)
        }
        Cmd::Ports => show::<PortsReport>(c, json, Command::Ports, render::ports),
        Cmd::Offenders { limit, reason } => show::<OffendersReport>(
            c,
            json,
            Command::Offenders {
                limit: *limit,
                reason: reason.clone(),
            },
            render::offenders,
        ),
        Cmd::Flowspec(FlowspecCmd::List) => {
            show::<FlowspecReport>(c, json, Command::FlowspecList, render::flowspec)
        }
        Cmd::Health => {
            let v = c.call(Command::Health)?;
            let h: HealthReport = serde_json::from_value(v.clone()).map_err(|e| {
                Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}")))
            })?;
            if json {
                print_json(&v);
            } else {
                print(&render::health(&h));
            }
            if h.healthy {
                Ok(())
            } else {
                Err(Fail::Local("unhealthy".into()))
            }
        }
        Cmd::BgpBridge { .. } => unreachable!("handled before connecting"),
        Cmd::Shutdown => show::<Done>(c, json, Command::Shutdown, render::done),
    }
}

fn latency(c: &mut Client, json: bool, reset: bool, hgrm: Option<&Path>) -> Out {
    let v = c.call(Command::Latency {
        reset,
        hgrm: hgrm.is_some(),
    })?;
    let r: LatencyReport = serde_json::from_value(v.clone())
        .map_err(|e| Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}"))))?;
    if let Some(file) = hgrm {
        let text = r
            .hgrm
            .as_deref()
            .ok_or_else(|| Fail::Local("the daemon sent no hgrm histogram".into()))?;
        std::fs::write(file, text)
            .map_err(|e| Fail::Local(format!("cannot write {}: {e}", file.display())))?;
    }
    if json {
        print_json(&v);
    } else {
        print(&render::latency(&r));
        if let Some(file) = hgrm {
            print(&format!("histogram written to {}\n", file.display()));
        }
    }
    Ok(())
}

fn top(c: &mut Client, json: bool, interval: f64, count: Option<u64>) -> Out {
    let tty = std::io::stdout().is_terminal();
    let pause = Duration::from_secs_f64(interval);
    let mut n: u64 = 0;
    loop {
        n = n.saturating_add(1);
        let v = c.call(Command::Stats)?;
        if json {
            // One JSON document per line per refresh.
            print(&format!("{v}\n"));
        } else {
            let r: StatsReport = serde_json::from_value(v).map_err(|e| {
                Fail::Client(ClientError::Protocol(format!("unexpected reply data: {e}")))
            })?;
            let frame = render::top_frame(&r, n, interval);
            if tty {
                print(&format!("\x1b[2J\x1b[H{frame}"));
            } else {
                print(&format!("{frame}\n"));
            }
        }
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_file_lines_and_errors_located() {
        let e =
            parse_list("# attackers\n192.0.2.1\n\n  198.51.100.0/24  # botnet\n2001:db8::/32\n");
        assert_eq!(
            e,
            vec![
                (2, "192.0.2.1".to_string()),
                (4, "198.51.100.0/24".to_string()),
                (5, "2001:db8::/32".to_string()),
            ]
        );
        assert_eq!(
            locate(
                "prefixes[1] \"x\": bad; nothing was added",
                Path::new("l.txt"),
                &e
            ),
            "l.txt:4: \"x\": bad; nothing was added"
        );
        assert_eq!(
            locate("prefixes[9] x", Path::new("l.txt"), &e),
            "prefixes[9] x"
        );
        assert_eq!(locate("other", Path::new("l.txt"), &e), "other");
    }

    #[test]
    fn a_hundred_thousand_prefixes_are_one_request() {
        let e: Vec<(usize, String)> = (0..100_000u32)
            .map(|i| {
                (
                    i as usize + 1,
                    format!(
                        "ffff:ffff:ffff:ffff:ffff:ffff:{:x}:{:x}/128",
                        i >> 16,
                        i & 0xffff
                    ),
                )
            })
            .collect();
        assert_eq!(chunks(&e).len(), 1);
        let many: Vec<(usize, String)> = (0..400_000u32)
            .map(|i| (1, format!("2001:db8::{i:x}/128")))
            .collect();
        let c = chunks(&many);
        assert!(c.len() > 1);
        assert_eq!(c.iter().map(|c| c.len()).sum::<usize>(), many.len());
        for chunk in c {
            let cmd = Command::BlockAddMany {
                prefixes: chunk.iter().map(|(_, p)| p.clone()).collect(),
                ttl_s: Some(u64::MAX),
            };
            let line = serde_json::to_string(&ctl::protocol::Request {
                v: 1,
                id: Some(u64::MAX),
                cmd,
            })
            .unwrap();
            assert!(line.len() <= MAX_REQUEST_BYTES, "{}", line.len());
        }
    }
}
