//! Zero heap allocations on the per-packet path (issue 12), proven on a real worker.
//!
//! A counting global allocator attributes every Rust allocation, reallocation and free to the
//! EAL lcore of the thread that makes it (`rte_lcore_id()`, a thread-local read; threads that are
//! not EAL lcores share one slot). The test starts real EAL on two `net_pcap` ports that replay
//! mixed traffic from memory without end (`infinite_rx=1`), runs one worker lcore with a
//! pipeline that has every stage (ACL, SYN cookies, rate limits, signatures, offender sketch),
//! lets it reach steady state, then reads the worker lcore's counters around millions of packets
//! of SYN flood (answered), forged-ACK flood, UDP reflection, HTTP and clean TCP in both
//! directions, with the periodic stats publish running every millisecond and the SYN-cookie
//! secret rotated through the update ring, and asserts that nothing was allocated or freed.
//!
//! What this covers is the Rust heap (scrubd's code: worker loop, pipeline, publish). DPDK's C
//! code takes packet buffers from mempools and does not go through this allocator.
//!
//! EAL initialises once per process, so the whole scenario is one test.

use dataplane::channel::{channel, ToCtl};
use dataplane::{run_workers, Control, Eal, Link, Mempool, Port, PortSetup, WorkerPlan};
use perf::pipebench::{self, Mix, RuleFiles, Stage};
use pipeline::{Direction, Pipeline, PipelineConfig, Policy, Update};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One slot per EAL lcore, plus one for every thread that is not an EAL lcore.
const SLOTS: usize = dpdk_sys::RTE_MAX_LCORE as usize + 1;
static ALLOCS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static FREES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The system allocator, counting per lcore. Counting itself neither allocates nor locks.
struct Counting;

fn slot() -> usize {
    // SAFETY: rte_lcore_id reads EAL's thread-local lcore id (LCORE_ID_ANY before EAL init and
    // on threads EAL did not create); it has no preconditions and does not allocate.
    let id = unsafe { dpdk_sys::shim_rte_lcore_id() } as usize;
    id.min(SLOTS - 1)
}

// SAFETY: every method forwards to `System` with the same arguments; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS[slot()].fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds alloc's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS[slot()].fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds alloc_zeroed's contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS[slot()].fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds realloc's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES[slot()].fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; ptr came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counts(lcore: u32) -> (u64, u64) {
    let i = lcore as usize;
    (
        ALLOCS[i].load(Ordering::Relaxed),
        FREES[i].load(Ordering::Relaxed),
    )
}

/// The first two CPUs this process may use (one twice on a one-CPU machine).
fn two_cpus() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("0")
        .trim()
        .to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<usize>(), hi.trim().parse::<usize>()) {
            cpus.extend(lo..=hi);
        }
    }
    let first = cpus.first().copied().unwrap_or(0);
    (first, cpus.get(1).copied().unwrap_or(first))
}

/// Internet checksum (RFC 1071) of `data`, folded, starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Point an Ethernet/IPv4 (no options)/TCP frame at `dst`, with both checksums recomputed.
fn retarget(mut f: Vec<u8>, dst: [u8; 4]) -> Vec<u8> {
    f[30..34].copy_from_slice(&dst);
    f[24..26].fill(0);
    let ip = checksum(0, &f[14..34]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let seg_len = total - 20;
    f[50..52].fill(0);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&f[26..34]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg_len as u16).to_be_bytes());
    let partial = u32::from(!checksum(0, &pseudo));
    let tcp = checksum(partial, &f[34..34 + seg_len]);
    f[50..52].copy_from_slice(&tcp.to_be_bytes());
    f
}

/// Outside: the attack mixes and clean traffic interleaved frame by frame; inside: the generator's
/// server-side mix (answers, DNS, ICMP, IPv6, VLAN tags, ARP).
///
/// The UDP reflection comes from 16 reflectors, so each spends its burst during warm-up and the
/// window sees the per-source limit dropping; the HTTP requests go to an unprotected server so
/// they reach the signature stage (the protected ones would stop at the SYN-cookie stage).
fn write_traffic(dir: &Path) -> (usize, usize) {
    let http: Vec<Vec<u8>> = pipebench::generate(Mix::Http, 1024, 12)
        .frames
        .into_iter()
        .map(|f| retarget(f, pipebench::UNPROTECTED_SERVER))
        .collect();
    let sets: Vec<Vec<Vec<u8>>> = vec![
        pipebench::generate(Mix::SynFlood, 2048, 12).frames,
        pipebench::generate(Mix::AckFlood, 2048, 12).frames,
        pipebench::generate(Mix::UdpReflection, 16, 12).frames,
        pipebench::generate(Mix::CleanTcp, 2048, 12).frames,
        http,
    ];
    let mut outside = Vec::new();
    for i in 0..2048 {
        for s in &sets {
            outside.push(perf::pcap::Frame {
                ts: Duration::from_micros(outside.len() as u64),
                data: s[i % s.len()].clone(),
            });
        }
    }
    let inside = perf::gen::mix(perf::gen::Side::Inside, 2048, 5);
    perf::pcap::write(&dir.join("outside.pcap"), &outside).expect("write outside.pcap");
    perf::pcap::write(&dir.join("inside.pcap"), &inside).expect("write inside.pcap");
    (outside.len(), inside.len())
}

/// The generated rule set plus two rules the traffic matches (HTTP logins, memcached values),
/// so the signature stage drops as well as scans.
fn write_rules(dir: &Path, rules: &RuleFiles) -> std::path::PathBuf {
    let generated = rules.path(pipebench::DEFAULT_RULES).expect("rules");
    let mut text = std::fs::read_to_string(generated).expect("read rules");
    text.push_str(
        "drop tcp any any -> any 80 (msg:\"noalloc login\"; content:\"POST /account/login\"; sid:9000001; rev:1;)\n\
         drop udp any 11211 -> any any (msg:\"noalloc memcached\"; content:\"VALUE k 0\"; sid:9000002; rev:1;)\n",
    );
    let p = dir.join("noalloc.rules");
    std::fs::write(&p, text).expect("write rules");
    p
}

/// Packets the worker must have handled before the window opens: every distinct source has
/// been seen many times (rate tables, allowlist, offender sketch filled) and every snapshot
/// buffer has been published more than once.
const WARMUP_PACKETS: u64 = 400_000;
const WARMUP_SNAPSHOTS: u64 = 16;
/// Packets inside the measured window.
const WINDOW_PACKETS: u64 = 2_000_000;
const WINDOW_SNAPSHOTS: u64 = 50;
const WINDOW_ROTATIONS: u64 = 3;
/// Only stops a broken run from hanging; no figure depends on it.
const GIVE_UP: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Window {
    rx: u64,
    snapshots: u64,
    acks: u64,
    allocs: u64,
    frees: u64,
}

#[test]
fn worker_steady_state_does_not_allocate() {
    let dir = std::env::temp_dir().join(format!("scrubd-noalloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (n_out, n_in) = write_traffic(&dir);
    let rules = RuleFiles::new(3).expect("rule dir");
    let rules_path = write_rules(&dir, &rules);
    let policy_text = pipebench::policy_toml(
        Stage::Signature(pipebench::DEFAULT_RULES),
        Some(&rules_path),
    );
    let cfg: PipelineConfig = toml::from_str(&policy_text).expect("policy parses");
    assert!(
        cfg.acl.is_some()
            && cfg.syncookie.is_some()
            && cfg.ratelimit.is_some()
            && cfg.signature.is_some()
            && cfg.offenders_capacity > 0,
        "the policy must have every stage"
    );

    let (c0, c1) = two_cpus();
    let prefix = format!("scrubd-noalloc-{}", std::process::id());
    let args: Vec<String> = vec![
        format!("--lcores=0@{c0},1@{c1}"),
        "--no-huge".into(),
        "-m".into(),
        "512".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        format!("--file-prefix={prefix}"),
        format!(
            "--vdev=net_pcap0,rx_pcap={},infinite_rx=1",
            dir.join("outside.pcap").display()
        ),
        format!(
            "--vdev=net_pcap1,rx_pcap={},infinite_rx=1",
            dir.join("inside.pcap").display()
        ),
    ];
    let eal = Eal::init("no-alloc-test", &args).expect("EAL init");
    let worker_lcore = 1;
    assert!(eal.lcore_enabled(worker_lcore));
    let policy = Policy::build(&cfg, eal.tsc_hz(), *b"no-alloc-secret!").expect("policy builds");
    // infinite_rx keeps every frame of both captures in mbufs, beside rings and caches.
    let pool = Mempool::new(&eal, "noalloc_pool", 32767, 256, -1).expect("mempool");
    let setup = PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        promiscuous: true,
        mtu: None,
    };
    let outside = Port::start(&eal, "net_pcap0", &pool, &setup).expect("outside port");
    let inside = Port::start(&eal, "net_pcap1", &pool, &setup).expect("inside port");
    let links = vec![
        Link {
            rx_port: outside.id(),
            tx_port: inside.id(),
            rx_index: 0,
            dir: Direction::Inbound,
        },
        Link {
            rx_port: inside.id(),
            tx_port: outside.id(),
            rx_index: 1,
            dir: Direction::Outbound,
        },
    ];
    let (wend, cend) = channel(
        0,
        2,
        Pipeline::stage_counter_names().len(),
        2 * cfg.offenders_capacity,
        4,
        4,
    );
    let tsc_hz = eal.tsc_hz();
    let plan = WorkerPlan {
        lcore: worker_lcore,
        queue: 0,
        burst: 32,
        links,
        ports: 2,
        pipeline: policy.worker(),
        channel: wend,
        // A snapshot every millisecond: the publish runs hundreds of times in the window.
        stats_interval_tsc: tsc_hz / 1000,
        tsc_hz,
    };
    let control = Control::new(1);
    let started = Instant::now();
    let (mut snapshots, mut acks) = (0u64, 0u64);
    let mut start: Option<Window> = None;
    let mut end: Option<Window> = None;
    let mut rotations = 0u64;
    let mut last_rotation = Instant::now();
    let reports = run_workers(&eal, vec![plan], &control, |ctl| {
        // The control side's part, as the daemon's control thread does it: recycle snapshot
        // buffers (latency histogram reset), take acks back.
        while let Some(item) = cend.recv() {
            match item {
                ToCtl::Snapshot(mut s) => {
                    snapshots += 1;
                    s.latency.reset();
                    cend.recycle(s);
                }
                ToCtl::Applied(_) => acks += 1,
            }
        }
        let rx = ctl.live[0].rx_packets.load(Ordering::Relaxed);
        let now = |snapshots, acks| {
            let (allocs, frees) = counts(worker_lcore);
            Window {
                rx,
                snapshots,
                acks,
                allocs,
                frees,
            }
        };
        if start.is_none() {
            if rx >= WARMUP_PACKETS && snapshots >= WARMUP_SNAPSHOTS {
                start = Some(now(snapshots, acks));
            }
        } else if let Some(s) = &start {
            // Rotations during the window exercise the update ring and the ack's publish.
            if rotations < WINDOW_ROTATIONS
                && last_rotation.elapsed() >= Duration::from_millis(20)
                && cend
                    .send(Box::new(Update::RotateCookie { applied: false }))
                    .is_ok()
            {
                rotations += 1;
                last_rotation = Instant::now();
            }
            if rx >= s.rx + WINDOW_PACKETS
                && snapshots >= s.snapshots + WINDOW_SNAPSHOTS
                && acks >= s.acks + WINDOW_ROTATIONS
            {
                end = Some(now(snapshots, acks));
                return false;
            }
        }
        if started.elapsed() > GIVE_UP {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
        true
    })
    .expect("worker ran");
    let (start, end) = match (start, end) {
        (Some(s), Some(e)) => (s, e),
        (s, _) => panic!(
            "the worker did not get through {} packets of warm-up and {} in the window within \
             {GIVE_UP:?} (window opened: {}, {} snapshots)",
            WARMUP_PACKETS,
            WINDOW_PACKETS,
            s.is_some(),
            snapshots
        ),
    };

    // The counter sees the worker's thread: the loop's own set-up allocates (counters, the
    // latency histogram) before the first packet.
    assert!(
        start.allocs > 0,
        "no allocation was ever attributed to lcore {worker_lcore}: the counter does not see it"
    );
    // The traffic was the mix it claims to be, in both directions.
    let rep = &reports[0];
    let (out, ins) = (&rep.per_port[0], &rep.per_port[1]);
    let drops: Vec<(String, u64)> = out.drop_breakdown();
    let dropped = |prefix: &str| drops.iter().any(|(n, c)| n.starts_with(prefix) && *c > 0);
    assert!(out.replied > 0, "no SYN was answered: {out:?}");
    assert!(out.forwarded > 0, "nothing was forwarded inbound: {out:?}");
    for reason in ["cookie_invalid", "rate_limited", "signature"] {
        assert!(dropped(reason), "no {reason} drop: {drops:?}");
    }
    assert!(ins.forwarded > 0, "nothing was forwarded outbound: {ins:?}");
    eprintln!(
        "frames: {n_out} outside, {n_in} inside; window: {} packets, {} snapshots, {} rotations \
         acked; worker lcore: {} allocations / {} frees before the window, {} / {} in it; \
         outside: {} forwarded, {} answered, drops {drops:?}",
        end.rx - start.rx,
        end.snapshots - start.snapshots,
        end.acks - start.acks,
        start.allocs,
        start.frees,
        end.allocs - start.allocs,
        end.frees - start.frees,
        out.forwarded,
        out.replied,
    );
    assert_eq!(
        (end.allocs - start.allocs, end.frees - start.frees),
        (0, 0),
        "the worker allocated/freed on the heap in steady state ({} packets, {} snapshots, {} \
         rotations)",
        end.rx - start.rx,
        end.snapshots - start.snapshots,
        end.acks - start.acks
    );

    drop(reports);
    drop(outside);
    drop(inside);
    drop(pool);
    drop(eal);
    let _ = std::fs::remove_dir_all(&dir);
}
