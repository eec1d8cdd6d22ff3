//! How the pipeline's per-source state scales over worker threads: N threads, each with its
//! own `Pipeline` from one `Policy` (as scrubd's workers are), replay the same traffic at once.

use clap::Parser;
use etherparse::PacketBuilder;
use perf::pipebench::{generate, Mix};
use pipeline::{Meta, Pipeline, PipelineConfig, Policy, Verdict};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Per-thread and total Mpps of the pipeline with 1..=N threads sharing one policy.
///
/// Scenarios (each a policy and a set of frames, replayed round robin by every thread):
///   reflection-many     UDP reflection from 4096 sources, `udp_reflection` limited per source
///   one-source-passing  every frame from one source, limit far above the offered rate: every
///                       packet is admitted, so every thread updates the same bucket
///   one-source-limited  every frame from one source, 100/s: nearly every packet is dropped
///   authenticated-tcp   established TCP from 64 authenticated clients to a protected prefix
///
/// Time for the token buckets is the wall clock read once per 32 packets (a burst), in ns, so
/// threads share one time base as workers share the TSC. Run on an idle machine with at least
/// N free cores; on fewer cores the threads time-share and the totals say nothing about scaling.
#[derive(Parser)]
#[command(name = "scrubd-shared-bench", version, verbatim_doc_comment)]
struct Args {
    /// Largest thread count (the sweep is 1, 2, 4, ... up to it).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Scenarios to run, comma separated (default all).
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
}

const HZ: u64 = 1_000_000_000;

fn udp_from(src: [u8; 4], i: u16) -> Vec<u8> {
    let mut v = Vec::new();
    let payload = [0x42u8; 400];
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, [10, 10, 10, 20], 64)
        .udp(11211, 1024 + i);
    if b.write(&mut v, &payload).is_err() {
        v.clear();
    }
    v
}

struct Scenario {
    name: &'static str,
    policy: String,
    frames: Vec<Vec<u8>>,
    /// Handshakes to run on one pipeline before timing (authenticated-tcp).
    authenticate: bool,
}

fn scenarios() -> Vec<Scenario> {
    let many = generate(Mix::UdpReflection, 4096, 1).frames;
    let one: Vec<Vec<u8>> = (0..4096u16)
        .map(|i| udp_from([203, 0, 113, 9], i))
        .collect();
    let tcp = generate(Mix::CleanTcp, 4096, 1);
    vec![
        Scenario {
            name: "reflection-many",
            policy: "[ratelimit]\nclasses.udp_reflection = { rate = 100, burst = 200 }\n".into(),
            frames: many,
            authenticate: false,
        },
        Scenario {
            name: "one-source-passing",
            policy:
                "[ratelimit]\nclasses.udp_reflection = { rate = 1000000000, burst = 1000000 }\n"
                    .into(),
            frames: one.clone(),
            authenticate: false,
        },
        Scenario {
            name: "one-source-limited",
            policy: "[ratelimit]\nclasses.udp_reflection = { rate = 100, burst = 100 }\n".into(),
            frames: one,
            authenticate: false,
        },
        Scenario {
            name: "authenticated-tcp",
            policy: "[syncookie]\nprotected = [\"10.10.10.0/24\"]\n".into(),
            frames: tcp.frames,
            authenticate: true,
        },
    ]
}

fn now_ns(t0: Instant) -> u64 {
    // Offset so the clock never starts at zero (a bucket's first refill is from its start).
    1_000_000_000 + t0.elapsed().as_nanos() as u64
}

/// Runs an auth-mode handshake for every client of the clean-tcp mix through `p`.
fn authenticate(p: &mut Pipeline, t0: Instant) {
    let mix = generate(Mix::CleanTcp, 4096, 1);
    for (k, (src, dst)) in mix.authenticate.iter().enumerate() {
        let sport = 40000 + (k % 20000) as u16;
        let mut syn = Vec::new();
        let _ = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(*src, *dst, 64)
            .tcp(sport, 80, 12345, 64240)
            .syn()
            .write(&mut syn, &[]);
        let n = syn.len();
        syn.resize(n + 256, 0);
        let meta = Meta {
            port: 0,
            tsc: now_ns(t0),
            ..Meta::default()
        };
        let Verdict::Reply { len } = p.process(&mut syn, n, &meta) else {
            continue;
        };
        let Ok(h) = pipeline::wire::parse::parse(&syn[..usize::from(len)]) else {
            continue;
        };
        let Some(pipeline::Transport::Tcp(t)) = h.ip().map(|i| i.transport) else {
            continue;
        };
        let mut rst = Vec::new();
        let _ = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(*src, *dst, 64)
            .tcp(sport, 80, t.seq, 0)
            .rst()
            .write(&mut rst, &[]);
        let n = rst.len();
        let _ = p.process(&mut rst, n, &meta);
    }
}

/// One thread's loop: returns packets processed and forwarded.
fn run_thread(mut p: Pipeline, frames: &[Vec<u8>], t0: Instant, until: Instant) -> (u64, u64) {
    let mut work: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut w = f.clone();
            w.resize(f.len() + 256, 0);
            w
        })
        .collect();
    let (mut done, mut fwd, mut i) = (0u64, 0u64, 0usize);
    loop {
        let tsc = now_ns(t0);
        if Instant::now() >= until {
            break;
        }
        let meta = Meta {
            port: 0,
            tsc,
            ..Meta::default()
        };
        for _ in 0..32 {
            let src = &frames[i];
            let buf = &mut work[i];
            buf[..src.len()].copy_from_slice(src);
            if p.process(buf, src.len(), &meta) == Verdict::Forward {
                fwd += 1;
            }
            i += 1;
            if i == frames.len() {
                i = 0;
            }
        }
        done += 32;
    }
    (done, fwd)
}

fn main() {
    let args = Args::parse();
    let t0 = Instant::now();
    println!(
        "threads on {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for sc in scenarios() {
        if !args.scenario.is_empty() && !args.scenario.iter().any(|s| s == sc.name) {
            continue;
        }
        let cfg: PipelineConfig = match toml::from_str(&sc.policy) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: policy: {e}", sc.name);
                std::process::exit(1);
            }
        };
        let mut n = 1;
        while n <= args.threads.max(1) {
            // A fresh policy per measurement, so no run inherits another's buckets.
            let policy = match Policy::build(&cfg, HZ, [9; 16]) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    eprintln!("{}: {e}", sc.name);
                    std::process::exit(1);
                }
            };
            let go = Arc::new(Barrier::new(n));
            let frames = Arc::new(sc.frames.clone());
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (policy, go, frames) =
                        (Arc::clone(&policy), Arc::clone(&go), Arc::clone(&frames));
                    let auth = sc.authenticate;
                    std::thread::spawn(move || {
                        let mut p = policy.worker();
                        // Every worker's pipeline meets the clients' handshakes, so the timed
                        // work is the same whether the allowlist is per worker or shared.
                        if auth {
                            authenticate(&mut p, t0);
                        }
                        go.wait();
                        let start = Instant::now();
                        let until = start + Duration::from_secs_f64(args.seconds);
                        let (done, fwd) = run_thread(p, &frames, t0, until);
                        (done, fwd, start.elapsed().as_secs_f64())
                    })
                })
                .collect();
            let res: Vec<(u64, u64, f64)> =
                handles.into_iter().filter_map(|h| h.join().ok()).collect();
            let per: Vec<f64> = res.iter().map(|r| r.0 as f64 / r.2 / 1e6).collect();
            let total: f64 = per.iter().sum();
            let fwd: u64 = res.iter().map(|r| r.1).sum();
            let done: u64 = res.iter().map(|r| r.0).sum();
            println!(
                "{:<20} threads {n:>2}: total {total:7.2} Mpps, per thread [{}], forwarded {:.2} %",
                sc.name,
                per.iter()
                    .map(|m| format!("{m:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                100.0 * fwd as f64 / done.max(1) as f64
            );
            n *= 2;
        }
    }
}
