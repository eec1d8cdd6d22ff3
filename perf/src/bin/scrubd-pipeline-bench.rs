//! Per-stage cost of scrubd's pipeline (ns and instructions per packet) on attack and clean mixes.

#![forbid(unsafe_code)]

use clap::Parser;
use perf::pipebench::{
    generate, run_row, InstructionCounter, Mix, MixFrames, PerfInstructions, RowResult, RuleFiles,
    RunParams, Stage,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Measure what each pipeline stage costs per packet, in ns and in retired instructions.
///
/// WHAT IS MEASURED
///   For each traffic mix, one row per cumulative pipeline, each its own Policy/Pipeline:
///     copy-only    restore each frame from a pristine copy, no pipeline (the baseline)
///     parse        Pipeline::pass_through(): parse only
///     +acl         parse + ACL (1000 deny prefixes, a few allows; no traffic hits them)
///     +syncookie   ... + SYN cookies protecting 10.10.10.0/24 (auth mode)
///     +synproxy    parse + ACL + SYN cookies in proxy mode (mode = "proxy"), instead of
///                  +syncookie: on syn-flood, ack-flood and proxied-tcp only
///     +ratelimit   ... + per-source limits (udp_reflection 100/s burst 200, tcp_syn, icmp,
///                  fragments) and an aggregate budget for 10.10.10.0/24
///     +signature(N) ... + N generated content rules (the full pipeline)
///   Mixes: clean-tcp (established flows, data + ACKs, to an unprotected server and to the
///   protected prefix from pre-authenticated sources), syn-flood (random sources), ack-flood
///   (forged cookies), udp-reflection (src port 53/123/11211, many reflectors), http (requests
///   against 1, 100 and 10000 rules: distinct contents, some nocase, some offset/depth, none
///   matching, a few near misses whose fast pattern occurs so verification runs too),
///   proxied-tcp (established flows to the protected prefix with timestamps, half inbound
///   client->server, half outbound server->client from the inside port; its +synproxy row
///   first runs each connection's handshake through the proxy, so every timed packet is
///   translated, and fails if a connection was lost or reopened during the replay);
///   proxied-tcp-in and proxied-tcp-out, run only when named, hold one direction each.
///
/// HOW
///   Frames are generated before timing (--distinct per mix, seeded), held in working buffers
///   with --room bytes after each frame for replies. Each packet is restored from its pristine
///   copy (the SYN-cookie stage rewrites frames in place), then Pipeline::process runs with
///   Meta.tsc advancing --tsc-step ticks per packet at --tsc-hz (default: 100 ns per packet, a
///   10 Mpps offered load), so token buckets refill as they would on the wire; after each
///   packet a frame a stage emitted besides its verdict (the SYN proxy's) is taken, as the
///   worker does, and counted as `emitted` (not a verdict). A warm-up of
///   --warmup packets precedes --repeat timed loops of --packets packets each; the
///   fastest loop is reported (least disturbed by other load). SYN-cookie rows of the
///   clean-tcp, http and proxied-tcp mixes first run one auth-mode handshake (SYN, SYN-ACK,
///   RST) per client.
///
///   ns/pkt       wall time of the timed loop / packets, minus the copy-only row (the copy-only
///                row itself shows the raw copy cost). Mpps = 1000 / ns/pkt.
///   marginal     this row minus the previous one: the cost of the stage the row adds. The
///                signature rows of the http mix each compare with +ratelimit, +synproxy
///                with +acl.
///   instr/pkt    retired user-space instructions in the timed loop, from perf_event_open
///                (PERF_COUNT_HW_INSTRUCTIONS), minus the copy-only row; "n/a" with the reason
///                when the kernel exposes no hardware PMU (common in VMs).
///   verdicts     what the timed packets became, to show each row measures what it claims.
///
/// INSTRUCTIONS WITHOUT A PMU
///   --instructions-via-callgrind re-executes this program once per row under
///   `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*pbench_measured_loop*`
///   with --callgrind-packets packets, reads the `totals:` (Ir) line of the output file and
///   subtracts the copy-only run of the same size. Callgrind counts instructions exactly and
///   deterministically (on its simulated CPU), but it runs ~50x slower, hence the small packet
///   count; the sweep stops at --callgrind-budget-s. To profile by hand:
///     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*pbench_measured_loop*' \
///       scrubd-pipeline-bench --mix http --packets 20000
///
/// REAL RULES AND FRAMES
///   --rules FILE... --pcap FILE... [--max-rules 10,10000]: loads the rule files as scrubd
///   does (Suricata's default variables, unsupported rules skipped), reads every frame of the
///   captures (an IMIX of real frames), and times SignatureStage::process alone, round robin,
///   minus the same loop without the stage; reports ns/packet, the full set's parse+compile
///   time, and the verdicts.
///
/// Timings are of one core as the host schedules it: run on an idle machine, compare rows of
/// the same run. No result is asserted; the tests check only the verdict counts.
#[derive(Parser)]
#[command(name = "scrubd-pipeline-bench", version, verbatim_doc_comment)]
struct Args {
    /// Packets per timed row.
    #[arg(long, default_value_t = 3_000_000)]
    packets: u64,
    /// Untimed packets through the same pipeline before each timed row.
    #[arg(long, default_value_t = 200_000)]
    warmup: u64,
    /// Timed repetitions per row; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Distinct frames per mix (replayed round robin; also the number of flood sources).
    #[arg(long, default_value_t = 4096)]
    distinct: usize,
    /// Mixes to run, comma separated (default all): clean-tcp, syn-flood, ack-flood,
    /// udp-reflection, http, proxied-tcp; also, only when named, proxied-tcp-in and
    /// proxied-tcp-out (one direction of proxied-tcp each).
    #[arg(long, value_delimiter = ',')]
    mix: Vec<String>,
    /// TSC frequency the pipeline is configured with.
    #[arg(long, default_value_t = 1_000_000_000)]
    tsc_hz: u64,
    /// TSC ticks Meta.tsc advances per packet.
    #[arg(long, default_value_t = 100)]
    tsc_step: u64,
    /// Writable bytes after each frame (reply room).
    #[arg(long, default_value_t = 256)]
    room: usize,
    /// Seed of the frame and rule generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print a JSON report instead of tables.
    #[arg(long)]
    json: bool,
    /// Print each row's pipeline policy (TOML) before the tables.
    #[arg(long)]
    show_policy: bool,
    /// Also count instructions under callgrind, one re-execution per row (see above).
    #[arg(long)]
    instructions_via_callgrind: bool,
    /// Timed packets per callgrind run.
    #[arg(long, default_value_t = 20_000)]
    callgrind_packets: u64,
    /// Warm-up packets per callgrind run (not counted).
    #[arg(long, default_value_t = 4096)]
    callgrind_warmup: u64,
    /// Wall-clock budget of the whole callgrind sweep; rows not reached report n/a.
    #[arg(long, default_value_t = 170)]
    callgrind_budget_s: u64,
    /// Internal: run one row (--row) of one mix as a callgrind child and print its verdicts.
    #[arg(long, hide = true)]
    callgrind_child: bool,
    /// Internal: the row key of a callgrind child.
    #[arg(long, hide = true)]
    row: Option<String>,
    /// Real rule files (e.g. ET Open): time the signature stage alone on the --pcap frames
    /// instead of the generated mixes. Rules load as scrubd loads them (unsupported ones are
    /// skipped) with Suricata's default variables.
    #[arg(long, num_args = 1.., requires = "pcap")]
    rules: Vec<PathBuf>,
    /// Captures whose frames (all of them, round robin: an IMIX) the --rules run inspects.
    #[arg(long, num_args = 1.., requires = "rules")]
    pcap: Vec<PathBuf>,
    /// With --rules: rule counts to time, each a sample spread evenly over the loaded set
    /// (default: all loaded rules).
    #[arg(long, value_delimiter = ',')]
    max_rules: Vec<usize>,
}

#[derive(Serialize)]
struct RowOut {
    row: String,
    packets: u64,
    /// Wall time per packet of the timed loop, copy included.
    raw_ns_per_pkt: f64,
    /// Copy-only row: equal to raw. Other rows: raw minus the copy-only row.
    ns_per_pkt: f64,
    mpps: f64,
    marginal_ns: Option<f64>,
    instructions_per_pkt: Option<f64>,
    marginal_instructions: Option<f64>,
    callgrind_ir_per_pkt: Option<f64>,
    callgrind_marginal_ir: Option<f64>,
    verdicts: BTreeMap<String, u64>,
    /// Verdicts of the (much shorter) callgrind run of this row.
    callgrind_verdicts: Option<BTreeMap<String, u64>>,
}

#[derive(Serialize)]
struct MixOut {
    mix: &'static str,
    description: &'static str,
    distinct_frames: usize,
    mean_frame_len: f64,
    rows: Vec<RowOut>,
}

#[derive(Serialize)]
struct Report {
    packets: u64,
    warmup: u64,
    repeat: u32,
    distinct: usize,
    tsc_hz: u64,
    tsc_step: u64,
    room: usize,
    seed: u64,
    instructions: String,
    callgrind: Option<String>,
    mixes: Vec<MixOut>,
}

/// Per-packet values of one column, indexed by row, with the copy-only row as baseline.
struct Column(Vec<(Stage, Option<f64>)>);

impl Column {
    fn raw(&self, s: Stage) -> Option<f64> {
        self.0.iter().find(|(x, _)| *x == s).and_then(|(_, v)| *v)
    }
    /// Cost of the pipeline alone: zero for copy-only, raw minus copy-only otherwise.
    fn net(&self, s: Stage) -> Option<f64> {
        let copy = self.raw(Stage::CopyOnly)?;
        if s == Stage::CopyOnly {
            return Some(0.0);
        }
        Some(self.raw(s)? - copy)
    }
    fn shown(&self, s: Stage) -> Option<f64> {
        if s == Stage::CopyOnly {
            self.raw(s)
        } else {
            self.net(s)
        }
    }
    fn marginal(&self, s: Stage) -> Option<f64> {
        let base = s.marginal_base()?;
        Some(self.net(s)? - self.net(base)?)
    }
}

fn per_pkt(v: Option<u64>, packets: u64) -> Option<f64> {
    v.map(|x| x as f64 / packets.max(1) as f64)
}

fn pmu_reason(e: &std::io::Error) -> String {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let hint = match e.raw_os_error() {
        Some(libc_enoent) if libc_enoent == 2 || libc_enoent == 19 || libc_enoent == 95 => {
            "the kernel exposes no hardware PMU (a VM without PMU passthrough; `perf stat -e instructions` says <not supported>)".to_string()
        }
        Some(13) | Some(1) => format!("not permitted, kernel.perf_event_paranoid = {paranoid}"),
        _ => format!("kernel.perf_event_paranoid = {paranoid}"),
    };
    format!("perf_event_open(PERF_COUNT_HW_INSTRUCTIONS): {e}; {hint}")
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("scrubd-pipeline-bench: {e}");
        std::process::exit(1);
    }
}

/// `--rules FILE... --pcap FILE...`: the signature stage's ns/packet on real rules and frames.
fn real_rules(args: &Args) -> Result<(), String> {
    let frames = perf::pipebench::RealFrames::load(&args.pcap)?;
    let counts: Vec<Option<usize>> = if args.max_rules.is_empty() {
        vec![None]
    } else {
        args.max_rules.iter().map(|&n| Some(n)).collect()
    };
    let mut out = Vec::new();
    for n in counts {
        let rules = perf::pipebench::load_real_rules(&args.rules, n)?;
        let t = perf::pipebench::time_signature(
            &rules,
            &frames,
            args.packets,
            args.warmup,
            args.repeat,
            args.tsc_step,
        );
        if !args.json {
            println!("{}", rules.rules.layout());
            println!(
                "rules {:>6} (of {} loaded, {} skipped; full set parse+compile {:.0} ms), \
                 {} fast patterns: {:>8.1} ns/pkt ({:.2} Mpps) over {} frames \
                 (mean {:.0} B, {} >= 1001 B, {} unparsed); loop {:.1} ns; hits {}; {:?}",
                t.rules,
                rules.loaded,
                rules.skipped,
                rules.full_load.as_secs_f64() * 1e3,
                t.fast_patterns,
                t.ns_per_pkt,
                1e3 / t.ns_per_pkt.max(1e-9),
                frames.frames.len(),
                frames.mean_len(),
                frames.at_least(1001),
                frames.unparsed,
                t.loop_ns_per_pkt,
                t.rule_hits,
                t.verdicts
            );
        }
        out.push(t);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

fn mixes(args: &Args) -> Result<Vec<Mix>, String> {
    if args.mix.is_empty() {
        return Ok(Mix::ALL.to_vec());
    }
    args.mix
        .iter()
        .map(|m| Mix::from_name(m).ok_or_else(|| format!("--mix: unknown mix `{m}`")))
        .collect()
}

fn run(args: Args) -> Result<(), String> {
    if args.packets == 0 || args.distinct == 0 {
        return Err("--packets and --distinct must be at least 1".into());
    }
    let params = RunParams {
        packets: args.packets,
        warmup: args.warmup,
        repeat: args.repeat,
        tsc_hz: args.tsc_hz,
        tsc_step: args.tsc_step,
        room: args.room,
    };
    if args.callgrind_child {
        return callgrind_child(&args, &params);
    }
    if !args.rules.is_empty() {
        return real_rules(&args);
    }
    let mixes = mixes(&args)?;
    let rules = RuleFiles::new(args.seed).map_err(|e| format!("temp dir: {e}"))?;

    let (mut counter, instr_note) = match PerfInstructions::open() {
        Ok(c) => (
            Some(c),
            "perf_event_open, user-space instructions".to_string(),
        ),
        Err(e) => (None, format!("n/a (no PMU access: {})", pmu_reason(&e))),
    };
    if !args.json {
        println!(
            "scrubd-pipeline-bench: best of {} x {} packets/row after {} warm-up, {} distinct frames/mix, tsc {} Hz +{}/pkt, reply room {} B",
            args.repeat, args.packets, args.warmup, args.distinct, args.tsc_hz, args.tsc_step, args.room
        );
        println!("instructions: {instr_note}");
    }
    if args.show_policy {
        for s in [
            Stage::Parse,
            Stage::Acl,
            Stage::SynCookie,
            Stage::SynProxy,
            Stage::RateLimit,
            Stage::Signature(100),
        ] {
            let p = rules.path(100).ok();
            println!(
                "--- policy of {} ---\n{}",
                s.label(),
                perf::pipebench::policy_toml(s, p.as_deref())
            );
        }
    }

    let mut results: Vec<(MixFrames, Vec<RowResult>)> = Vec::new();
    for mix in &mixes {
        let frames = generate(*mix, args.distinct, args.seed);
        let mut rows = Vec::new();
        for stage in mix.stages() {
            let c = counter.as_mut().map(|c| c as &mut dyn InstructionCounter);
            let r = run_row(&frames, stage, &rules, &params, c)?;
            if !args.json {
                eprintln!(
                    "  {} {}: {:.1} ns/pkt raw",
                    mix.name(),
                    stage.label(),
                    r.elapsed_ns / r.packets as f64
                );
            }
            rows.push(r);
        }
        results.push((frames, rows));
    }
    // A counter that opened but never counts (some hypervisors) is no measurement either.
    let mut instr_note = instr_note;
    let pmu_counts = results
        .iter()
        .flat_map(|(_, rows)| rows.iter())
        .any(|r| r.instructions.is_some_and(|i| i > 0));
    if counter.is_some() && !pmu_counts {
        instr_note =
            "n/a (no PMU access: perf_event_open succeeded but the counter stayed at 0)".into();
    }

    let mut callgrind_note = None;
    let mut callgrind: CallgrindValues = BTreeMap::new();
    if args.instructions_via_callgrind {
        let (note, values) = callgrind_sweep(&args, &mixes)?;
        callgrind_note = Some(note);
        callgrind = values;
    }

    let mut report = Report {
        packets: args.packets,
        warmup: args.warmup,
        repeat: args.repeat,
        distinct: args.distinct,
        tsc_hz: args.tsc_hz,
        tsc_step: args.tsc_step,
        room: args.room,
        seed: args.seed,
        instructions: instr_note.clone(),
        callgrind: callgrind_note.clone(),
        mixes: Vec::new(),
    };
    for (frames, rows) in &results {
        let ns = Column(
            rows.iter()
                .map(|r| (r.stage, Some(r.elapsed_ns / r.packets as f64)))
                .collect(),
        );
        let instr = Column(
            rows.iter()
                .map(|r| {
                    let v = if pmu_counts {
                        per_pkt(r.instructions, r.packets)
                    } else {
                        None
                    };
                    (r.stage, v)
                })
                .collect(),
        );
        let cg = Column(
            rows.iter()
                .map(|r| {
                    let v = callgrind
                        .get(&(frames.mix.name().to_string(), r.stage.key()))
                        .map(|(ir, _)| *ir as f64 / args.callgrind_packets as f64);
                    (r.stage, v)
                })
                .collect(),
        );
        let out_rows = rows
            .iter()
            .map(|r| {
                let s = r.stage;
                let shown = ns.shown(s).unwrap_or(f64::NAN);
                RowOut {
                    row: s.label(),
                    packets: r.packets,
                    raw_ns_per_pkt: ns.raw(s).unwrap_or(f64::NAN),
                    ns_per_pkt: shown,
                    mpps: 1e3 / shown,
                    marginal_ns: ns.marginal(s),
                    instructions_per_pkt: instr.shown(s),
                    marginal_instructions: instr.marginal(s),
                    callgrind_ir_per_pkt: cg.shown(s),
                    callgrind_marginal_ir: cg.marginal(s),
                    verdicts: r.tally.nonzero(),
                    callgrind_verdicts: callgrind
                        .get(&(frames.mix.name().to_string(), s.key()))
                        .map(|(_, v)| v.clone()),
                }
            })
            .collect();
        report.mixes.push(MixOut {
            mix: frames.mix.name(),
            description: frames.mix.description(),
            distinct_frames: frames.frames.len(),
            mean_frame_len: frames.mean_len(),
            rows: out_rows,
        });
    }

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_tables(&report, args.instructions_via_callgrind);
    }
    Ok(())
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "n/a".into(),
    }
}

fn print_tables(report: &Report, with_cg: bool) {
    for m in &report.mixes {
        println!();
        println!(
            "== {} ({} frames, mean {:.0} B) ==\n   {}",
            m.mix, m.distinct_frames, m.mean_frame_len, m.description
        );
        let mut head = format!(
            "{:<17} {:>8} {:>8} {:>9} {:>10} {:>10}",
            "row", "ns/pkt", "Mpps", "marg.ns", "instr/pkt", "marg.instr"
        );
        if with_cg {
            head.push_str(&format!(" {:>9} {:>9}", "Ir/pkt", "marg.Ir"));
        }
        head.push_str("  verdicts");
        println!("{head}");
        for r in &m.rows {
            let marg = |v: Option<f64>, p: usize| {
                if r.row == "copy-only" {
                    "-".to_string()
                } else {
                    fmt(v, p)
                }
            };
            let mut line = format!(
                "{:<17} {:>8} {:>8} {:>9} {:>10} {:>10}",
                r.row,
                fmt(Some(r.ns_per_pkt), 1),
                fmt(Some(r.mpps), 2),
                marg(r.marginal_ns, 1),
                fmt(r.instructions_per_pkt, 0),
                marg(r.marginal_instructions, 0),
            );
            if with_cg {
                line.push_str(&format!(
                    " {:>9} {:>9}",
                    fmt(r.callgrind_ir_per_pkt, 0),
                    marg(r.callgrind_marginal_ir, 0)
                ));
            }
            let v: Vec<String> = r.verdicts.iter().map(|(k, c)| format!("{k}={c}")).collect();
            line.push_str("  ");
            line.push_str(&v.join(" "));
            println!("{line}");
        }
        for r in &m.rows {
            let Some(cv) = &r.callgrind_verdicts else {
                continue;
            };
            let frac = |n: u64, total: u64| n as f64 / total.max(1) as f64;
            let total_cg: u64 = cv.values().sum();
            let differs = r.verdicts.iter().any(|(k, n)| {
                let c = cv.get(k).copied().unwrap_or(0);
                (frac(*n, r.packets) - frac(c, total_cg)).abs() > 0.01
            });
            if differs {
                let v: Vec<String> = cv.iter().map(|(k, c)| format!("{k}={c}")).collect();
                println!(
                    "note: {} Ir/pkt comes from a different verdict mix (short run, rate limits not yet binding): {}",
                    r.row,
                    v.join(" ")
                );
            }
        }
        for r in m.rows.iter().filter(|r| r.row.starts_with("+signature")) {
            let mut t = format!(
                "total {}: {} ns/pkt pipeline ({} with copy) = {} Mpps, instructions/pkt {}",
                r.row,
                fmt(Some(r.ns_per_pkt), 1),
                fmt(Some(r.raw_ns_per_pkt), 1),
                fmt(Some(r.mpps), 2),
                fmt(r.instructions_per_pkt, 0)
            );
            if with_cg {
                t.push_str(&format!(", Ir/pkt {}", fmt(r.callgrind_ir_per_pkt, 0)));
            }
            println!("{t}");
        }
    }
    println!();
    println!("instructions: {}", report.instructions);
    if let Some(c) = &report.callgrind {
        println!("callgrind: {c}");
    }
}

/// Child side of the callgrind sweep: one row, its verdicts on stdout.
fn callgrind_child(args: &Args, params: &RunParams) -> Result<(), String> {
    let [m] = args.mix.as_slice() else {
        return Err("--callgrind-child needs exactly one --mix".into());
    };
    let mix = Mix::from_name(m).ok_or_else(|| format!("unknown mix `{m}`"))?;
    let key = args.row.as_deref().ok_or("--callgrind-child needs --row")?;
    let stage = Stage::from_key(key).ok_or_else(|| format!("unknown row `{key}`"))?;
    let frames = generate(mix, args.distinct, args.seed);
    let rules = RuleFiles::new(args.seed).map_err(|e| format!("temp dir: {e}"))?;
    let r = run_row(&frames, stage, &rules, params, None)?;
    println!(
        "{}",
        serde_json::to_string(&r.tally.nonzero()).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The `totals:` (or `summary:`) event count of a callgrind output file: Ir, the only event
/// collected without cache simulation.
fn callgrind_totals(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let find = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    find("totals:")
        .or_else(|| find("summary:"))
        .ok_or_else(|| format!("{}: no totals/summary line", path.display()))
}

/// Runs every (mix, row) under callgrind, sequentially, within the time budget.
/// (mix, row key) → (Ir of the measured loop, verdicts of the callgrind run).
type CallgrindValues = BTreeMap<(String, String), (u64, BTreeMap<String, u64>)>;

fn callgrind_sweep(args: &Args, mixes: &[Mix]) -> Result<(String, CallgrindValues), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = std::env::temp_dir().join(format!("scrubd-pbench-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let start = Instant::now();
    let budget = Duration::from_secs(args.callgrind_budget_s);
    let mut values = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut failed = Vec::new();
    for mix in mixes {
        for stage in mix.stages() {
            let left = budget.saturating_sub(start.elapsed());
            if left < Duration::from_secs(1) {
                skipped.push(format!("{}/{}", mix.name(), stage.key()));
                continue;
            }
            match callgrind_one(args, &exe, &dir, *mix, stage, left) {
                Ok(v) => {
                    values.insert((mix.name().to_string(), stage.key()), v);
                }
                Err(e) => failed.push(format!("{}/{}: {e}", mix.name(), stage.key())),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut note = format!(
        "valgrind --tool=callgrind, toggle-collect=*pbench_measured_loop*, {} packets per row after {} warm-up, Ir minus the copy-only run; sweep took {:.0} s",
        args.callgrind_packets,
        args.callgrind_warmup,
        start.elapsed().as_secs_f64()
    );
    if !skipped.is_empty() {
        note.push_str(&format!(
            "; not run (budget of {} s spent): {}",
            args.callgrind_budget_s,
            skipped.join(", ")
        ));
    }
    if !failed.is_empty() {
        note.push_str(&format!("; failed: {}", failed.join("; ")));
    }
    Ok((note, values))
}

fn callgrind_one(
    args: &Args,
    exe: &Path,
    dir: &Path,
    mix: Mix,
    stage: Stage,
    limit: Duration,
) -> Result<(u64, BTreeMap<String, u64>), String> {
    let out: PathBuf = dir.join(format!("{}.{}.out", mix.name(), stage.key()));
    let log = dir.join(format!("{}.{}.log", mix.name(), stage.key()));
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let verdict_path = dir.join(format!("{}.{}.verdicts", mix.name(), stage.key()));
    let verdict_file = std::fs::File::create(&verdict_path).map_err(|e| e.to_string())?;
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*pbench_measured_loop*")
        .arg(exe)
        .args([
            "--callgrind-child",
            "--mix",
            mix.name(),
            "--row",
            &stage.key(),
        ])
        .args(["--packets", &args.callgrind_packets.to_string()])
        .args(["--warmup", &args.callgrind_warmup.to_string()])
        .args(["--repeat", "1"])
        .args(["--distinct", &args.distinct.to_string()])
        .args(["--tsc-hz", &args.tsc_hz.to_string()])
        .args(["--tsc-step", &args.tsc_step.to_string()])
        .args(["--room", &args.room.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .stdout(Stdio::from(verdict_file))
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| format!("cannot start valgrind: {e}"))?;
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {:.0} s", limit.as_secs_f64()));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if !status.success() {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(3).collect();
        return Err(format!("{status}: {}", tail.join(" | ")));
    }
    let verdicts: BTreeMap<String, u64> = std::fs::read_to_string(&verdict_path)
        .ok()
        .and_then(|t| serde_json::from_str(t.trim()).ok())
        .unwrap_or_default();
    Ok((callgrind_totals(&out)?, verdicts))
}
