//! `dpdk-dumpcap` capturing a running primary's traffic through `dataplane::pdump`.
//!
//! The primary (this test process, one EAL per process, hence one test) runs with hugepages
//! and shared runtime files, loops known frames through a `net_ring` port (what it sends comes
//! back on its RX queue) and lets `dpdk-dumpcap` attach as a secondary with the same
//! `--file-prefix`. The pcapng file must hold exactly the requested number of packets, each
//! one of the frames sent, in both directions. Hugepages are reserved for the test with the
//! project's `hugepage-setup` library and given back afterwards; the test is skipped, saying
//! why, only when they cannot be reserved (not root, no 2 MiB pages) or dumpcap is absent.

use dataplane::{pdump, Eal, Mempool, Port, PortSetup};
use hugepage_setup::{
    apply, plan_reserve, status, PageSize, Plan, ReserveRequest, Roots, Step, SystemHost,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DUMPCAP: &str = "/usr/bin/dpdk-dumpcap";
/// Enough for the primary (a small pool plus EAL's own) and dumpcap's pool and ring.
const FREE_PAGES_NEEDED: u64 = 256;
const CAPTURE_COUNT: usize = 20;
const FRAMES: usize = 8;
const MOUNT_POINT: &str = "/dev/hugepages";

/// Hugepages reserved for this test; puts the page count and the mount back on drop.
struct Hugepages {
    size: PageSize,
    previous_total: u64,
    set_total: Option<u64>,
    mounted: Option<PathBuf>,
    mount_point: PathBuf,
}

impl Hugepages {
    fn reserve() -> Result<Hugepages, String> {
        let roots = Roots::default();
        let size = PageSize::from_kib(2048).ok_or("2 MiB is not a page size")?;
        let st = status(&roots).map_err(|e| format!("cannot read hugepage status: {e}"))?;
        let ss = st
            .size(size)
            .ok_or("the kernel offers no 2 MiB hugepages")?;
        let existing_mount = st.mounts_of(size).next().map(|m| m.mount_point.clone());
        let target = if ss.free >= FREE_PAGES_NEEDED {
            ss.total
        } else {
            ss.total + (FREE_PAGES_NEEDED - ss.free)
        };
        let plan = plan_reserve(
            &roots,
            &ReserveRequest {
                pages: target,
                size,
                node: None,
                mount: Some(PathBuf::from(MOUNT_POINT)),
                allow_partial: false,
            },
        )
        .map_err(|e| format!("cannot plan the reservation: {e}"))?;
        let mut me = Hugepages {
            size,
            previous_total: ss.total,
            set_total: None,
            mounted: None,
            mount_point: existing_mount.unwrap_or_else(|| PathBuf::from(MOUNT_POINT)),
        };
        for step in &plan.steps {
            let one = Plan {
                steps: vec![step.clone()],
                notes: vec![],
            };
            apply(&one, &mut SystemHost)
                .map_err(|e| format!("cannot reserve {target} x 2 MiB pages: {e}"))?;
            match step {
                Step::SetPages { target, .. } if *target != me.previous_total => {
                    me.set_total = Some(*target)
                }
                Step::Mount { target, .. } => me.mounted = Some(target.clone()),
                _ => {}
            }
        }
        Ok(me)
    }

    /// Removes the hugepage files a DPDK prefix left behind (EAL keeps them after exit unless
    /// told to unlink them, which would stop secondaries from attaching).
    fn remove_files_of(&self, prefix: &str) {
        if let Ok(dir) = std::fs::read_dir(&self.mount_point) {
            for e in dir.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}map_"))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let roots = Roots::default();
        if let Some(set) = self.set_total {
            // Only if nobody else changed the pool meanwhile.
            let now = status(&roots)
                .ok()
                .and_then(|st| st.size(self.size).map(|s| s.total));
            if now == Some(set) {
                let restore = plan_reserve(
                    &roots,
                    &ReserveRequest {
                        pages: self.previous_total,
                        size: self.size,
                        node: None,
                        mount: None,
                        allow_partial: true,
                    },
                );
                match restore.map(|p| apply(&p, &mut SystemHost)) {
                    Ok(Ok(_)) => {}
                    other => eprintln!("could not give the hugepages back: {other:?}"),
                }
            }
        }
        if let Some(target) = &self.mounted {
            let plan = Plan {
                steps: vec![Step::Unmount {
                    target: target.clone(),
                }],
                notes: vec![],
            };
            if let Err(e) = apply(&plan, &mut SystemHost) {
                eprintln!("could not unmount {}: {e}", target.display());
            }
        }
    }
}

/// Distinct Ethernet/IPv4/UDP frames whose payload names their index.
fn frames() -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|i| {
            let payload = format!("scrubd-pdump-frame-{i:02}");
            let mut f = Vec::new();
            f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
            f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
            f.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + 8 + payload.len()) as u16;
            f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17]);
            f.extend_from_slice(&[0, 0, 192, 0, 2, 1, 198, 51, 100, i as u8]);
            let udp_len = (8 + payload.len()) as u16;
            f.extend_from_slice(&[0x30, 0x39, 0, 53, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
            f.extend_from_slice(payload.as_bytes());
            f
        })
        .collect()
}

/// One burst of `frames` out of the port and whatever comes back in, all freed.
fn loop_once(port: u16, pool: &Mempool, frames: &[Vec<u8>]) {
    let mut tx: Vec<*mut dpdk_sys::rte_mbuf> = Vec::with_capacity(frames.len());
    for f in frames {
        // SAFETY: pool is a live pktmbuf pool.
        let m = unsafe { dpdk_sys::shim_rte_pktmbuf_alloc(pool.as_ptr()) };
        if m.is_null() {
            break;
        }
        // SAFETY: m is a fresh mbuf we own; append returns NULL if the room is too small.
        let dst = unsafe { dpdk_sys::shim_rte_pktmbuf_append(m, f.len() as u16) };
        assert!(!dst.is_null(), "frame does not fit an mbuf");
        // SAFETY: dst points to f.len() writable bytes inside m's data room.
        unsafe { std::ptr::copy_nonoverlapping(f.as_ptr(), dst.cast::<u8>(), f.len()) };
        tx.push(m);
    }
    // SAFETY: port and queue 0 were set up by Port::start; tx holds tx.len() owned mbufs.
    let sent =
        unsafe { dpdk_sys::shim_rte_eth_tx_burst(port, 0, tx.as_mut_ptr(), tx.len() as u16) };
    if usize::from(sent) < tx.len() {
        // SAFETY: the unsent tail is still ours.
        unsafe {
            dpdk_sys::shim_rte_pktmbuf_free_bulk(
                tx.as_mut_ptr().add(sent.into()),
                (tx.len() - usize::from(sent)) as u32,
            )
        };
    }
    let mut rx = [std::ptr::null_mut::<dpdk_sys::rte_mbuf>(); 32];
    // SAFETY: as above; rx has room for 32 mbuf pointers.
    let got = unsafe { dpdk_sys::shim_rte_eth_rx_burst(port, 0, rx.as_mut_ptr(), 32) };
    // SAFETY: the received mbufs are ours.
    unsafe { dpdk_sys::shim_rte_pktmbuf_free_bulk(rx.as_mut_ptr(), got.into()) };
}

struct Captured {
    /// Frame bytes and epb_flags.
    packets: Vec<(Vec<u8>, Option<u32>)>,
    if_names: Vec<String>,
    /// The last number on dumpcap's "Packets captured:" line.
    reported: Option<usize>,
    /// The captured port's id in the primary.
    port_id: u16,
}

/// A little-endian pcapng reader for what dumpcap writes. The `pcap-file` crate (2.0) refuses
/// DPDK's files: it rejects the `epb_queue` option (code 6) DPDK puts on every packet.
fn read_capture(path: &Path) -> Captured {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("dumpcap wrote no {}: {e}", path.display()));
    let u16_at = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let pad4 = |n: usize| (n + 3) & !3;
    // Options as (code, value) up to opt_endofopt.
    let options = |mut b: &[u8]| -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while let (Some(code), Some(len)) = (u16_at(b, 0), u16_at(b, 2)) {
            if code == 0 {
                break;
            }
            let len = usize::from(len);
            let value = b.get(4..4 + len).expect("option value inside its block");
            out.push((code, value.to_vec()));
            b = b.get(4 + pad4(len)..).unwrap_or(&[]);
        }
        out
    };
    assert_eq!(u32_at(&bytes, 0), Some(0x0A0D_0D0A), "section header first");
    assert_eq!(
        u32_at(&bytes, 8),
        Some(0x1A2B_3C4D),
        "little-endian section"
    );
    let mut out = Captured {
        packets: Vec::new(),
        if_names: Vec::new(),
        reported: None,
        port_id: u16::MAX,
    };
    let mut at = 0;
    while at < bytes.len() {
        let kind = u32_at(&bytes, at).expect("block type");
        let len = u32_at(&bytes, at + 4).expect("block length") as usize;
        assert!(len >= 12 && len & 3 == 0, "block length {len} at {at}");
        let body = bytes
            .get(at + 8..at + len - 4)
            .expect("block inside the file");
        match kind {
            1 => {
                // if_name (2) and if_description (3).
                for (code, value) in options(body.get(8..).unwrap_or(&[])) {
                    if code == 2 || code == 3 {
                        let text = String::from_utf8_lossy(&value);
                        out.if_names.push(text.trim_end_matches('\0').to_string());
                    }
                }
            }
            6 => {
                let caplen = u32_at(body, 12).expect("captured length") as usize;
                let data = body.get(20..20 + caplen).expect("packet inside its block");
                let flags = options(body.get(20 + pad4(caplen)..).unwrap_or(&[]))
                    .into_iter()
                    .find(|(code, _)| *code == 2)
                    .and_then(|(_, v)| u32_at(&v, 0));
                out.packets.push((data.to_vec(), flags));
            }
            _ => {}
        }
        at += len;
    }
    out
}

#[test]
fn dumpcap_captures_from_scrubd_primary() {
    if !Path::new(DUMPCAP).exists() {
        println!("SKIPPED: {DUMPCAP} not installed (Debian package 'dpdk')");
        return;
    }
    let huge = match Hugepages::reserve() {
        Ok(h) => h,
        Err(why) => {
            println!("SKIPPED: hugepages cannot be reserved: {why}");
            return;
        }
    };
    let prefix = format!("scrubd-pdump-{}", std::process::id());
    let capture = std::env::temp_dir().join(format!("{prefix}.pcapng"));
    let _ = std::fs::remove_file(&capture);
    let result = std::panic::catch_unwind(|| run_scenario(&prefix, &capture));
    // Files first: the pages they hold must be free before the pool shrinks.
    huge.remove_files_of(&prefix);
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
    drop(huge);
    let captured = match result {
        Ok(c) => c,
        Err(p) => std::panic::resume_unwind(p),
    };
    let _ = std::fs::remove_file(&capture);

    let sent = frames();
    // dumpcap checks -c after each burst it drains, so it may write a few more.
    assert!(
        captured.packets.len() >= CAPTURE_COUNT,
        "{} packets in the capture, asked for {CAPTURE_COUNT}",
        captured.packets.len()
    );
    assert_eq!(
        Some(captured.packets.len()),
        captured.reported,
        "packets in the file vs dumpcap's final count"
    );
    for (data, _) in &captured.packets {
        assert!(
            sent.contains(data),
            "captured a frame we did not send: {data:02x?}"
        );
    }
    // pcapng epb_flags bits 0-1: 1 inbound, 2 outbound; dumpcap captures both by default.
    let dirs: Vec<u32> = captured
        .packets
        .iter()
        .map(|(_, f)| f.unwrap_or(0) & 3)
        .collect();
    assert!(dirs.contains(&1), "no inbound packet: {dirs:?}");
    assert!(dirs.contains(&2), "no outbound packet: {dirs:?}");
    assert!(
        // dumpcap 22.11 names interfaces by port id.
        captured
            .if_names
            .contains(&format!("dpdk:{}", captured.port_id)),
        "interface names: {:?}",
        captured.if_names
    );
}

fn run_scenario(prefix: &str, capture: &Path) -> Captured {
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-pci",
        &format!("--file-prefix={prefix}"),
        "--vdev=net_ring0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init("pdump-test", &args).expect("EAL init with hugepages");
    let pool = Mempool::new(&eal, "pdump_pool", 2047, 32, -1).expect("mempool");
    let setup = PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        promiscuous: false,
        mtu: None,
    };
    let port = Port::start(&eal, "net_ring0", &pool, &setup).expect("net_ring0");
    let hook = pdump::init(&eal).expect("pdump init");
    assert!(pdump::init(&eal).is_err(), "a second init must be refused");

    let mut dumpcap = Command::new(DUMPCAP)
        .arg(format!("--file-prefix={prefix}"))
        .args(["-i", "net_ring0", "-c", &CAPTURE_COUNT.to_string(), "-w"])
        .arg(capture)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dpdk-dumpcap");

    let sent = frames();
    // A generous bound so a broken capture fails instead of hanging; not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        loop_once(port.id(), &pool, &sent);
        if let Some(st) = dumpcap.try_wait().expect("wait for dumpcap") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = dumpcap.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let out = dumpcap.wait_with_output().expect("dumpcap output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("dpdk-dumpcap said:\n{log}");
    let status = status.unwrap_or_else(|| panic!("dpdk-dumpcap did not finish in 60 s:\n{log}"));
    assert!(status.success(), "dpdk-dumpcap failed ({status}):\n{log}");

    let port_id = port.id();
    drop(hook);
    drop(port);
    drop(pool);
    drop(eal);
    let mut captured = read_capture(capture);
    captured.port_id = port_id;
    captured.reported = log
        .lines()
        .find_map(|l| l.strip_prefix("Packets captured:"))
        // It redraws the count in place with backspaces: "0 \x08\x0816 \x08\x08\x0832".
        .and_then(|l| {
            l.split(|c: char| c.is_whitespace() || c == '\u{8}')
                .rfind(|t| !t.is_empty())
        })
        .and_then(|n| n.parse().ok());
    captured
}
