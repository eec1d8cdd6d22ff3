//! `scrubgen run`: the generator's lcores.

use dataplane::{rdtsc, Eal, Mbufs, Mempool, Port, PortSetup, Queue};
use perf::scrubgen::{classify, Class, FlowTable, Gen, Port as Side, Profile, RunReport, Tally};
use perf::scrubgen::{CLASSES, MAX_FRAME};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Traffic profile (TOML; see perf/profiles/).
    #[arg(long)]
    pub profile: PathBuf,
    /// Target rate of new packets/s over all workers (legitimate clients' answers - RST, SYN
    /// again, data - come on top); 0 = as fast as the port takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds of transmission of new packets (then the run drains).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Stop after this many new packets over all workers (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub packets: u64,
    /// Generator workers: one lcore and one queue per port each.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// EAL lcore list: lcore 0 is the main lcore, 1..=workers the workers (e.g. "0@0,1@0").
    #[arg(long)]
    pub lcores: Option<String>,
    /// DPDK file prefix (a second DPDK process on the machine needs its own).
    #[arg(long, default_value = "scrubgen")]
    pub file_prefix: String,
    /// EAL memory: "no-huge" or "in-memory" (hugepages).
    #[arg(long, default_value = "no-huge", value_parser = ["no-huge", "in-memory"])]
    pub memory: String,
    /// The port facing the scrubber's outside (transmits, receives its answers).
    #[arg(
        long,
        default_value = "net_memif0,role=client,socket=/run/scrubd-outside.sock,id=0"
    )]
    pub outside: String,
    /// The port facing the scrubber's inside (receives what it forwards).
    #[arg(
        long,
        default_value = "net_memif1,role=client,socket=/run/scrubd-inside.sock,id=0"
    )]
    pub inside: String,
    /// Extra EAL argument, repeatable.
    #[arg(long = "eal-arg", allow_hyphen_values = true)]
    pub eal_args: Vec<String>,
    /// Frames per transmit burst.
    #[arg(long, default_value_t = 32)]
    pub burst: usize,
    /// After the last new packet: stop once nothing arrived for this long (ms).
    #[arg(long, default_value_t = 200)]
    pub quiet_ms: u64,
    /// Seconds to wait for both links to come up (the scrubber's memif servers).
    #[arg(long, default_value_t = 20.0)]
    pub link_timeout: f64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency distribution (microseconds) as HdrHistogram .hgrm text here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Print no progress line.
    #[arg(long)]
    pub quiet: bool,
    /// After the report is written, keep the ports open (not polling) until the peer has
    /// closed both links, for at most this many seconds. DPDK 22.11's net_memif unmaps its
    /// rings when the peer disconnects, under the feet of a worker polling them (scrubd
    /// crashed in librte_net_memif that way when a generator quit first, and Pktgen when
    /// scrubd did): the side that stops polling first must let the other quit first.
    #[arg(long, default_value_t = 0.0)]
    pub wait_peer_quit: f64,
}

/// Receive polls per port and loop turn while polls come back full: a loop turn sends at most
/// a burst of new packets plus the clients' answers to what it received, so the receive side
/// must be able to take several bursts per turn.
const RX_POLLS: usize = 8;

/// Counters a worker publishes for the progress line (relaxed stores about every ms).
#[derive(Default)]
struct Live {
    sent: AtomicU64,
    passed: AtomicU64,
    answered: AtomicU64,
    false_pass: AtomicU64,
    legit_sent: AtomicU64,
    legit_passed: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    done: AtomicUsize,
    live: Vec<Live>,
}

struct WorkerPlan<'p> {
    idx: usize,
    out_q: Queue<'p>,
    in_q: Queue<'p>,
    /// New packets this worker sends (u64::MAX: until the time is up).
    cap: u64,
    /// Packets per TSC tick (0: flat out).
    per_tick: f64,
}

struct Outcome {
    tally: Tally,
    first_tx: u64,
    last_tx: u64,
}

pub fn main(a: RunArgs) -> Result<std::process::ExitCode, String> {
    if a.workers == 0 || a.workers > 64 {
        return Err("--workers: 1..=64".into());
    }
    if a.burst == 0 || a.burst > 128 {
        return Err("--burst: 1..=128".into());
    }
    dataplane::signals::install_stop_handler().map_err(|e| format!("signal handler: {e}"))?;
    let profile = Profile::load(&a.profile).map_err(|e| e.to_string())?;
    let lcores = a.lcores.clone().unwrap_or_else(|| {
        (0..=a.workers)
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let mut eal_args = vec![
        format!("--lcores={lcores}"),
        "--no-pci".into(),
        format!("--file-prefix={}", a.file_prefix),
        "--log-level=lib.eal:error".into(),
    ];
    let mbufs = (a.workers * (4 * 1024 + 3 * 256 + 512) + 8192) as u32;
    match a.memory.as_str() {
        "in-memory" => eal_args.push("--in-memory".into()),
        _ => {
            eal_args.push("--no-huge".into());
            eal_args.push("-m".into());
            eal_args.push((u64::from(mbufs) * 2560 / (1 << 20) + 256).to_string());
        }
    }
    eal_args.extend(a.eal_args.iter().cloned());
    eal_args.push(format!("--vdev={}", a.outside));
    eal_args.push(format!("--vdev={}", a.inside));
    let eal = Eal::init("scrubgen", &eal_args).map_err(|e| e.to_string())?;
    let workers = eal.worker_lcores();
    if workers.len() < a.workers {
        return Err(format!(
            "--lcores {lcores}: {} worker lcore(s) for {} workers",
            workers.len(),
            a.workers
        ));
    }
    let pool = Mempool::new(&eal, "scrubgen", mbufs, 256, -1).map_err(|e| e.to_string())?;
    let q = a.workers as u16;
    let setup = PortSetup {
        rx_queues: q,
        tx_queues: q,
        rx_desc: 1024,
        tx_desc: 1024,
        promiscuous: true,
        mtu: None,
    };
    let port_name = |vdev: &str| vdev.split(',').next().unwrap_or(vdev).to_string();
    let outside = Port::start(&eal, &port_name(&a.outside), &pool, &setup)
        .map_err(|e| format!("outside port: {e}"))?;
    let inside = Port::start(&eal, &port_name(&a.inside), &pool, &setup)
        .map_err(|e| format!("inside port: {e}"))?;
    let t0 = Instant::now();
    while !(outside.link().up && inside.link().up) {
        if t0.elapsed().as_secs_f64() > a.link_timeout {
            return Err(format!(
                "links not up after {} s (outside {}, inside {}): is the scrubber running?",
                a.link_timeout,
                outside.link().up,
                inside.link().up
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let hz = eal.tsc_hz();
    let out_qs = outside.take_queues().ok_or("outside queues taken")?;
    let in_qs = inside.take_queues().ok_or("inside queues taken")?;
    let shared = Shared {
        stop: AtomicBool::new(false),
        done: AtomicUsize::new(0),
        live: (0..a.workers).map(|_| Live::default()).collect(),
    };
    let n = a.workers as u64;
    let mut jobs: Vec<dataplane::lcore::LcoreJob<'_, Outcome>> = Vec::new();
    for (idx, (out_q, in_q)) in out_qs.into_iter().zip(in_qs).enumerate() {
        let cap = if a.packets == 0 {
            u64::MAX
        } else {
            a.packets / n + u64::from((idx as u64) < a.packets % n)
        };
        let plan = WorkerPlan {
            idx,
            out_q,
            in_q,
            cap,
            per_tick: a.rate as f64 / n as f64 / hz as f64,
        };
        let (profile, pool, shared, a) = (&profile, &pool, &shared, &a);
        jobs.push((
            workers[idx],
            Box::new(move || {
                let o = worker(plan, profile, pool, shared, a, hz);
                shared.done.fetch_add(1, Relaxed);
                o
            }),
        ));
    }
    let progress = !a.quiet;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64, 0u64);
    let outcomes = dataplane::run_on_lcores(&eal, jobs, || {
        if dataplane::signals::stop_requested() {
            shared.stop.store(true, Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
        if progress && last.0.elapsed() >= Duration::from_secs(1) {
            let sum = |f: fn(&Live) -> &AtomicU64| -> u64 {
                shared.live.iter().map(|l| f(l).load(Relaxed)).sum()
            };
            let (s, p, an) = (sum(|l| &l.sent), sum(|l| &l.passed), sum(|l| &l.answered));
            let dt = last.0.elapsed().as_secs_f64();
            let mpps = |now: u64, before: u64| (now - before.min(now)) as f64 / dt / 1e6;
            let line = format!(
                "t={:>5.1}s offered {:>7.3} Mpps  passed {:>7.3} Mpps  answered {:>7.3} Mpps  \
                 false-pass {}  legit delivered {}/{}",
                start.elapsed().as_secs_f64(),
                mpps(s, last.1),
                mpps(p, last.2),
                mpps(an, last.3),
                sum(|l| &l.false_pass),
                sum(|l| &l.legit_passed),
                sum(|l| &l.legit_sent),
            );
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            last = (Instant::now(), s, p, an);
        }
        shared.done.load(Relaxed) < a.workers
    })
    .map_err(|e| e.to_string())?;
    if progress && tty {
        eprintln!();
    }
    let mut total = Tally::new();
    let (mut first, mut lastt) = (u64::MAX, 0u64);
    for o in &outcomes {
        total.add(&o.tally);
        if o.tally.total_sent() > 0 {
            first = first.min(o.first_tx);
            lastt = lastt.max(o.last_tx);
        }
    }
    let tx_seconds = if lastt > first {
        (lastt - first) as f64 / hz as f64
    } else {
        0.0
    };
    let per_s = |v: u64| {
        if tx_seconds > 0.0 {
            v as f64 / tx_seconds / 1e6
        } else {
            0.0
        }
    };
    let port_stats = [("outside", &outside), ("inside", &inside)]
        .iter()
        .map(|(n, p)| {
            let s = p.stats();
            (n.to_string(), s.opackets, s.ipackets, s.imissed, s.oerrors)
        })
        .collect();
    let report = RunReport {
        profile: profile.name.clone(),
        workers: a.workers,
        lcores,
        rate_pps: a.rate,
        tx_seconds,
        sent: total.total_sent(),
        passed: total.total_passed(),
        answered: total.total_answered(),
        offered_mpps: per_s(total.total_sent()),
        passed_mpps: per_s(total.total_passed()),
        answered_mpps: per_s(total.total_answered()),
        false_pass: total.false_pass(),
        false_drop: total.false_drop(),
        untagged_inside: total.untagged_inside,
        untagged_outside: total.untagged_outside,
        untracked: total.untracked,
        unsent: total.unsent,
        classes: total.classes(),
        latency: total.latency_summary(),
        port_stats,
    };
    print!("{}", summary(&report));
    if let Some(p) = &a.hgrm {
        std::fs::write(p, stats::hgrm::write_percentiles(&total.latency, 1000.0))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &a.json {
        // Written last and renamed into place: its appearance tells a harness that the run
        // is over and every output is complete.
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < a.wait_peer_quit && (outside.link().up || inside.link().up) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((outside, inside));
    drop(pool);
    drop(eal);
    Ok(std::process::ExitCode::SUCCESS)
}

/// The human-readable report.
pub fn summary(r: &RunReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ =
        writeln!(
        s,
        "profile {}: {} worker(s) on lcores {}, {:.2} s: offered {:.3} Mpps, passed {:.3} Mpps, \
         answered {:.3} Mpps",
        r.profile, r.workers, r.lcores, r.tx_seconds, r.offered_mpps, r.passed_mpps, r.answered_mpps
    );
    let _ = writeln!(
        s,
        "{:<16} {:>13} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "class", "expect", "sent", "passed", "answered", "dropped", "false-pass", "false-drop"
    );
    for c in &r.classes {
        let _ = writeln!(
            s,
            "{:<16} {:>13} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            c.class.name(),
            format!("{:?}", c.expect).to_lowercase(),
            c.sent,
            c.passed,
            c.answered,
            c.dropped,
            c.false_pass,
            c.false_drop
        );
    }
    let _ = writeln!(
        s,
        "false-pass {} false-drop {}; untagged inside {} outside {}; untracked {}; unsent {}",
        r.false_pass, r.false_drop, r.untagged_inside, r.untagged_outside, r.untracked, r.unsent
    );
    let l = &r.latency;
    let _ = writeln!(
        s,
        "latency ({} samples): p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        l.samples, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
    );
    s
}

/// Offer `m` to `q` and count what left per class; the unsent stay at the front of `m`
/// (and of `classes`), in order.
fn tx_counted(q: &mut Queue<'_>, m: &mut Mbufs<'_>, classes: &mut [Class], t: &mut Tally) -> usize {
    let before = m.len();
    let sent = q.tx(m);
    for c in &classes[..sent] {
        t.sent[*c as usize] += 1;
    }
    classes.copy_within(sent..before, 0);
    sent
}

fn worker(
    mut p: WorkerPlan<'_>,
    profile: &Profile,
    pool: &Mempool<'_>,
    shared: &Shared,
    a: &RunArgs,
    hz: u64,
) -> Outcome {
    let mut t = Tally::new();
    let mut gen = Gen::new(profile, p.idx as u8, a.seed);
    // Holds every SYN of the last ~256k sent: far more than are in flight at once.
    let mut table = FlowTable::new(1 << 18);
    let mut new = Mbufs::new(pool);
    let mut new_cls = [Class::Replay; dataplane::BURST_CAP];
    let mut resp = Mbufs::new(pool);
    let mut resp_cls = [Class::Replay; dataplane::BURST_CAP];
    let mut rx = Mbufs::new(pool);
    let ns_per_tick = 1e9 / hz as f64;
    let burst = a.burst;
    let segs = profile.data_segments as usize;
    let start = rdtsc();
    let end = start + (a.seconds * hz as f64) as u64;
    let quiet = a.quiet_ms * hz / 1000;
    // A run that never goes quiet (a looping peer) still ends.
    let max_drain = quiet + 2 * hz;
    let (mut built, mut first_tx, mut last_tx) = (0u64, 0u64, 0u64);
    let (mut drain_from, mut last_activity) = (0u64, start);
    let mut next_publish = start;
    let publish_every = hz / 1000;
    // Whether the last poll of either port came back full: then new traffic waits, so that
    // this lcore, which also receives, never offers more than it can take back (flat out,
    // the scrubber would otherwise drop forwarded packets as tx_full on our inside ring and
    // the generator's own limit would read as false drops).
    let mut rx_full = false;
    loop {
        let now = rdtsc();
        let sending = now < end && built < p.cap && !shared.stop.load(Relaxed);
        if sending && new.is_empty() && !rx_full {
            let allowed = if p.per_tick > 0.0 {
                (((now - start) as f64 * p.per_tick) as u64).saturating_sub(built)
            } else {
                burst as u64
            };
            let n = allowed.min(burst as u64).min(p.cap - built) as usize;
            if n > 0 && new.alloc(pool, n) {
                let mut ok = n;
                #[allow(clippy::needless_range_loop)] // i indexes the mbufs and the classes
                for i in 0..n {
                    let Some(buf) = new.frame_mut(i, MAX_FRAME as u16) else {
                        ok = i;
                        break;
                    };
                    let b = gen.next(now, buf);
                    if b.len == 0 || new.frame_mut(i, b.len as u16).is_none() {
                        ok = i;
                        break;
                    }
                    if let Some((addr, port)) = b.syn_key {
                        table.insert(addr, port, b.class, now);
                    }
                    new_cls[i] = b.class;
                }
                new.truncate(ok);
                built += ok as u64;
            }
        }
        if !new.is_empty() && tx_counted(&mut p.out_q, &mut new, &mut new_cls, &mut t) > 0 {
            if first_tx == 0 {
                first_tx = now;
            }
            last_tx = now;
        }
        if !resp.is_empty() {
            tx_counted(&mut p.out_q, &mut resp, &mut resp_cls, &mut t);
        }
        // The scrubber's answers on the outside: polled until a poll comes back short (at
        // most RX_POLLS times), so the receive side keeps up with what this lcore sends.
        let mut got_out = 0;
        for _ in 0..RX_POLLS {
            let got = p.out_q.rx(&mut rx, burst);
            got_out += got;
            for i in 0..got {
                let Some(f) = rx.frame(i) else { break };
                let arr = classify(f, Side::Outside, &table);
                if arr.untracked {
                    t.untracked += 1;
                }
                let Some(c) = arr.class else {
                    t.untagged_outside += 1;
                    continue;
                };
                t.answered[c as usize] += 1;
                if let Some(ts) = arr.tsc {
                    t.record_latency((now.saturating_sub(ts) as f64 * ns_per_tick) as u64);
                }
                if c == Class::LegitSyn {
                    if let Some(synack) = arr.tcp {
                        if make_room(&mut p.out_q, &mut resp, &mut resp_cls, &mut t, 2)
                            && resp.alloc(pool, 2)
                        {
                            let k = resp.len() - 2;
                            let mut rst = [0u8; 128];
                            let mut syn = [0u8; 128];
                            let (r, s) = gen.answer_challenge(&synack, now, &mut rst, &mut syn);
                            table.insert(synack.dst, synack.dport, Class::LegitSynAgain, now);
                            for (j, (b, bytes)) in [(r, &rst), (s, &syn)].into_iter().enumerate() {
                                if let Some(d) = resp.frame_mut(k + j, b.len as u16) {
                                    d.copy_from_slice(&bytes[..b.len]);
                                }
                                resp_cls[k + j] = b.class;
                            }
                        } else {
                            t.unsent += 2;
                        }
                    }
                }
            }
            rx.clear();
            if got < burst {
                break;
            }
        }
        // What the scrubber forwarded to the inside, polled the same way.
        let mut got_in = 0;
        for _ in 0..RX_POLLS {
            let got = p.in_q.rx(&mut rx, burst);
            got_in += got;
            for i in 0..got {
                let Some(f) = rx.frame(i) else { break };
                let arr = classify(f, Side::Inside, &table);
                if arr.untracked {
                    t.untracked += 1;
                }
                let Some(c) = arr.class else {
                    t.untagged_inside += 1;
                    continue;
                };
                t.passed[c as usize] += 1;
                if let Some(ts) = arr.tsc {
                    t.record_latency((now.saturating_sub(ts) as f64 * ns_per_tick) as u64);
                }
                // A client's SYN reached the server: its data follows.
                if matches!(c, Class::LegitSyn | Class::LegitSynAgain) && segs > 0 {
                    let Some(syn) = arr.tcp else { continue };
                    if !(make_room(&mut p.out_q, &mut resp, &mut resp_cls, &mut t, segs)
                        && resp.alloc(pool, segs))
                    {
                        t.unsent += segs as u64;
                        continue;
                    }
                    let k0 = resp.len() - segs;
                    let mut ok = segs;
                    for k in 0..segs {
                        let Some(buf) = resp.frame_mut(k0 + k, MAX_FRAME as u16) else {
                            ok = k;
                            break;
                        };
                        let b = gen.data(&syn, k as u32, now, buf);
                        if b.len == 0 || resp.frame_mut(k0 + k, b.len as u16).is_none() {
                            ok = k;
                            break;
                        }
                        resp_cls[k0 + k] = b.class;
                    }
                    if ok < segs {
                        t.unsent += (segs - ok) as u64;
                        resp.truncate(k0 + ok);
                    }
                }
            }
            rx.clear();
            if got < burst {
                break;
            }
        }
        rx_full = got_out >= RX_POLLS * burst || got_in >= RX_POLLS * burst;
        if got_out + got_in > 0 || !new.is_empty() || !resp.is_empty() {
            last_activity = now;
        }
        if now >= next_publish {
            next_publish = now + publish_every;
            publish(&shared.live[p.idx], &t);
        }
        if !sending {
            if drain_from == 0 {
                drain_from = now;
                // The sending window ends here, not at the last packet the port took: a device
                // that stalls must read as a low rate, not as a burst over a short window.
                if first_tx != 0 {
                    last_tx = now;
                }
            }
            let idle = now.saturating_sub(last_activity) > quiet;
            if (idle && new.is_empty() && resp.is_empty())
                || now - drain_from > max_drain
                || (shared.stop.load(Relaxed) && now - drain_from > quiet)
            {
                break;
            }
        }
    }
    t.unsent += (new.len() + resp.len()) as u64;
    publish(&shared.live[p.idx], &t);
    Outcome {
        tally: t,
        first_tx,
        last_tx,
    }
}

/// Make room for `n` more responses: offer what is queued until enough left (bounded: a
/// peer that stopped polling must not hang the worker). False when there is no room.
fn make_room(
    q: &mut Queue<'_>,
    resp: &mut Mbufs<'_>,
    cls: &mut [Class],
    t: &mut Tally,
    n: usize,
) -> bool {
    let mut tries = 0;
    while resp.room() < n && tries < 100_000 {
        tx_counted(q, resp, cls, t);
        tries += 1;
    }
    resp.room() >= n
}

fn publish(l: &Live, t: &Tally) {
    let legit = [Class::LegitSynAgain, Class::LegitData, Class::SignatureMiss];
    l.sent.store(t.total_sent(), Relaxed);
    l.passed.store(t.total_passed(), Relaxed);
    l.answered.store(t.total_answered(), Relaxed);
    let fp: u64 = (0..CLASSES)
        .filter(|&i| Class::ALL[i].is_attack())
        .map(|i| t.passed[i])
        .sum();
    l.false_pass.store(fp, Relaxed);
    l.legit_sent
        .store(legit.iter().map(|c| t.sent[*c as usize]).sum(), Relaxed);
    l.legit_passed
        .store(legit.iter().map(|c| t.passed[*c as usize]).sum(), Relaxed);
}
