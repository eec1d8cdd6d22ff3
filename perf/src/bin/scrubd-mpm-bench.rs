//! Multi-pattern engines compared on exactly the work scrubd's signature prefilter does.

#![forbid(unsafe_code)]

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use clap::Parser;
use perf::pipebench::{load_real_rules, RealFrames};
use pipeline::stage::signature::SignatureStage;
use std::path::PathBuf;
use std::time::Instant;

/// Compare multi-pattern engines on the signature stage's own prefilter work.
///
/// WHAT IS MEASURED
///   The signature stage groups rules by transport, recognised application protocol and
///   destination port, and scans each packet's payload with the automaton of every group the
///   packet belongs to, asking only *which* fast patterns occur. This program loads real rules
///   (--rules, as scrubd does: Suricata's default variables, unsupported rules skipped), asks
///   the stage for its scan plan of every frame of the --pcap captures (which groups, which
///   bytes; `SignatureStage::scan_plan`), and times that plan with each engine over the same
///   pattern sets (`CompiledRules::mpm_groups`):
///     stage          the stage's own scanners: Vectorscan (Debian libvectorscan-dev, through
///                    the `hyperscan` crate) block mode, one database per group, each pattern
///                    a literal, HS_FLAG_CASELESS only on the patterns that are nocase (each
///                    occurrence reported, as SINGLEMATCH loses matches in Vectorscan
///                    5.4.9: see the stage's prefilter docs); memchr's memmem
///                    per pattern for groups of <= 3 case-sensitive patterns
///     aho-corasick   the engine the stage used before: the `aho-corasick` crate, DFA up to
///                    300 patterns, else contiguous NFA, overlapping search (every occurrence
///                    reported), ASCII case-insensitive for the whole group when any of its
///                    patterns is nocase
///   Verification (the rules' other conditions) is not part of either figure: it is the same
///   whichever engine finds the candidates, except that fewer candidates mean less of it.
///
/// OUTPUT
///   Per rule count: ns per packet for each engine (fastest of --repeat loops of --packets
///   packets, round robin over the frames), distinct candidate patterns per packet, database
///   build times, and a consistency check: every pattern the stage reports, aho-corasick
///   reports too (the stage's per-pattern caselessness can only report fewer), and every
///   pattern aho-corasick reports that really occurs (case-sensitively where not nocase) the
///   stage reports.
///
/// EXAMPLE
///   scrubd-mpm-bench --rules ../shared/rules/et-open/*.rules \
///     --pcap $(ls ../shared/pcaps/*.pcap* | grep -v synflood) --max-rules 10,10000
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Rule files (e.g. ET Open).
    #[arg(long, num_args = 1.., required = true)]
    rules: Vec<PathBuf>,
    /// Captures whose frames are scanned (all of them, round robin).
    #[arg(long, num_args = 1.., required = true)]
    pcap: Vec<PathBuf>,
    /// Rule counts, each a sample spread evenly over the loaded set (default: all).
    #[arg(long, value_delimiter = ',')]
    max_rules: Vec<usize>,
    /// Packets per timed loop.
    #[arg(long, default_value_t = 200_000)]
    packets: u64,
    /// Timed loops per engine; the fastest is reported.
    #[arg(long, default_value_t = 5)]
    repeat: u32,
}

/// Builds the previous engine's automaton for each group, as the stage built it.
fn aho_corasick_groups(groups: &[&[(Vec<u8>, bool)]]) -> Result<Vec<Option<AhoCorasick>>, String> {
    groups
        .iter()
        .map(|pats| {
            if pats.is_empty() {
                return Ok(None);
            }
            let nocase = pats.iter().any(|(_, nc)| *nc);
            let kind = (pats.len() <= 300).then_some(AhoCorasickKind::DFA);
            AhoCorasick::builder()
                .ascii_case_insensitive(nocase)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(pats.iter().map(|(p, _)| p))
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Whether pattern `p` occurs in `hay` with the stage's meaning (ASCII case ignored only
/// when nocase; nocase patterns are stored lowercased).
fn occurs(p: &(Vec<u8>, bool), hay: &[u8]) -> bool {
    let (pat, nocase) = p;
    if *nocase {
        hay.windows(pat.len()).any(|w| w.eq_ignore_ascii_case(pat))
    } else {
        memchr::memmem::find(hay, pat).is_some()
    }
}

/// The frames' scan plans: per frame, (group, start, end) for each group scanned.
type Plans = Vec<Vec<(usize, usize, usize)>>;

/// Times `scan` over the plans (round robin), fastest of `repeat` loops, in ns per packet;
/// also returns the distinct patterns reported per packet, on average.
fn time_engine(
    frames: &RealFrames,
    plans: &Plans,
    packets: u64,
    repeat: u32,
    groups: usize,
    mut scan: impl FnMut(usize, &[u8], &mut dyn FnMut(usize)),
) -> (f64, f64) {
    // A per-(group, pattern) stamp, as the stage keeps, to count each pattern once per packet.
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); groups];
    let mut best = f64::MAX;
    let mut distinct = 0u64;
    let n = frames.frames.len();
    for r in 0..=repeat {
        let t = Instant::now();
        let mut d = 0u64;
        for i in 0..packets {
            let k = (i as usize) % n;
            let stamp = i + 1 + u64::from(r) * packets;
            for &(g, s, e) in &plans[k] {
                let hay = &frames.frames[k][s..e];
                let marks = &mut seen[g];
                scan(g, hay, &mut |p| {
                    if marks.len() <= p {
                        marks.resize(p + 1, 0);
                    }
                    if marks[p] != stamp {
                        marks[p] = stamp;
                        d += 1;
                    }
                });
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / packets as f64;
        // Loop 0 warms caches (and sizes the stamp vectors) and is not counted.
        if r > 0 && ns < best {
            best = ns;
            distinct = d;
        }
    }
    (best, distinct as f64 / packets as f64)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("scrubd-mpm-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let frames = RealFrames::load(&args.pcap)?;
    if frames.frames.is_empty() {
        return Err("no frame of the captures parses".into());
    }
    println!(
        "frames {} (mean {:.0} B, {} >= 1001 B, {} unparsed and left out)",
        frames.frames.len(),
        frames.mean_len(),
        frames.at_least(1001),
        frames.unparsed
    );
    let counts: Vec<Option<usize>> = if args.max_rules.is_empty() {
        vec![None]
    } else {
        args.max_rules.iter().map(|&n| Some(n)).collect()
    };
    for n in counts {
        let rules = load_real_rules(&args.rules, n)?;
        let mut stage = SignatureStage::new(rules.rules.clone());
        let mut plans: Plans = Vec::with_capacity(frames.frames.len());
        for (f, h) in frames.frames.iter().zip(&frames.headers) {
            let mut p = Vec::new();
            stage.scan_plan(f, h, &mut p);
            plans.push(p);
        }
        let groups: Vec<&[(Vec<u8>, bool)]> = rules.rules.mpm_groups().collect();
        let t = Instant::now();
        let ac = aho_corasick_groups(&groups)?;
        let ac_build = t.elapsed();
        let scans: usize = plans.iter().map(Vec::len).sum();
        let bytes: usize = plans.iter().flatten().map(|&(_, s, e)| e - s).sum();
        println!(
            "\nrules {} (of {} loaded): {} fast patterns in {} groups; {:.2} group scans and {:.0} \
             bytes scanned per packet; aho-corasick automata built in {:.0} ms",
            rules.rules.len(),
            rules.loaded,
            rules.rules.pattern_count(),
            groups.len(),
            scans as f64 / plans.len() as f64,
            bytes as f64 / plans.len() as f64,
            ac_build.as_secs_f64() * 1e3
        );
        // Consistency: the stage reports only patterns aho-corasick reports, and every
        // pattern that really occurs.
        let (mut extra, mut missed) = (0u64, 0u64);
        for (k, plan) in plans.iter().enumerate() {
            for &(g, s, e) in plan {
                let hay = &frames.frames[k][s..e];
                let mut a = Vec::new();
                if !stage.mpm_scan(g, hay, |p| a.push(p)) {
                    return Err(format!("the stage's scan of group {g} failed"));
                }
                let mut b = Vec::new();
                if let Some(ac) = &ac[g] {
                    b.extend(
                        ac.find_overlapping_iter(hay)
                            .map(|m| m.pattern().as_usize()),
                    );
                }
                extra += a.iter().filter(|p| !b.contains(p)).count() as u64;
                for &p in &b {
                    if !a.contains(&p) && occurs(&groups[g][p], hay) {
                        if missed < 5 {
                            eprintln!("group {g}: the stage missed pattern {p} {:?}", groups[g][p]);
                        }
                        missed += 1;
                    }
                }
            }
        }
        let mut failed = false;
        let (stage_ns, stage_c) = time_engine(
            &frames,
            &plans,
            args.packets,
            args.repeat,
            groups.len(),
            |g, hay, f| failed |= !stage.mpm_scan(g, hay, f),
        );
        if failed {
            return Err("a scan of the stage failed while timing".into());
        }
        let (ac_ns, ac_c) = time_engine(
            &frames,
            &plans,
            args.packets,
            args.repeat,
            groups.len(),
            |g, hay, f| {
                if let Some(ac) = &ac[g] {
                    for m in ac.find_overlapping_iter(hay) {
                        f(m.pattern().as_usize());
                    }
                }
            },
        );
        println!("  engine          ns/pkt   candidate patterns/pkt");
        println!("  stage         {stage_ns:8.1}   {stage_c:8.3}");
        println!("  aho-corasick  {ac_ns:8.1}   {ac_c:8.3}");
        println!(
            "  aho-corasick/stage time {:.2}x; stage patterns aho-corasick did not report: \
             {extra}, occurring patterns the stage missed: {missed} (both must be 0)",
            ac_ns / stage_ns
        );
        if extra != 0 || missed != 0 {
            return Err("engines disagree".into());
        }
    }
    Ok(())
}
