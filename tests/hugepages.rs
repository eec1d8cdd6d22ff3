//! Hugepages mode leaves nothing behind (issue 10 item 6): after a clean exit no
//! `<prefix>map_*` file is left in any hugetlbfs and no `/var/run/dpdk/<prefix>`; after SIGKILL
//! the files stay (the kernel cannot know), and the next start with the same prefix reclaims
//! them before EAL starts, then leaves nothing at its own exit.
//!
//! Needs root and 2 MiB hugepages: the test reserves what it needs (and mounts a hugetlbfs if
//! none is mounted) and gives both back; it is skipped, saying why, only when that fails.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const SYSFS: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";
/// 128 MiB for EAL (-m) plus headroom.
const PAGES_NEEDED: u64 = 96;

/// 2 MiB pages reserved (and a hugetlbfs mounted) for this test; put back on drop.
struct Hugepages {
    previous_total: u64,
    set_total: Option<u64>,
    mounted: Option<PathBuf>,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn free_pages() -> u64 {
    read_u64(&Path::new(SYSFS).join("free_hugepages")).unwrap_or(0)
}

fn hugetlbfs_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 3 && f[2] == "hugetlbfs").then(|| PathBuf::from(f[1]))
        })
        .collect()
}

impl Hugepages {
    fn reserve(mount_at: &Path) -> Result<Hugepages, String> {
        let nr = Path::new(SYSFS).join("nr_hugepages");
        let total = read_u64(&nr).ok_or("the kernel offers no 2 MiB hugepages")?;
        let mut me = Hugepages {
            previous_total: total,
            set_total: None,
            mounted: None,
        };
        let free = free_pages();
        if free < PAGES_NEEDED {
            let want = total + (PAGES_NEEDED - free);
            std::fs::write(&nr, want.to_string())
                .map_err(|e| format!("cannot reserve hugepages ({}): {e}", nr.display()))?;
            me.set_total = Some(want);
            if free_pages() < PAGES_NEEDED {
                return Err(format!(
                    "asked for {want} pages, the kernel gave {} free",
                    free_pages()
                ));
            }
        }
        if hugetlbfs_mounts().is_empty() {
            std::fs::create_dir_all(mount_at).map_err(|e| e.to_string())?;
            let st = Command::new("mount")
                .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev"])
                .arg(mount_at)
                .status()
                .map_err(|e| format!("mount: {e}"))?;
            if !st.success() {
                return Err(format!("cannot mount hugetlbfs at {}", mount_at.display()));
            }
            me.mounted = Some(mount_at.to_path_buf());
        }
        Ok(me)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg(m).status();
        }
        let nr = Path::new(SYSFS).join("nr_hugepages");
        // Only if nobody else changed the pool meanwhile.
        if self.set_total.is_some() && read_u64(&nr) == self.set_total {
            if let Err(e) = std::fs::write(&nr, self.previous_total.to_string()) {
                eprintln!("could not give the hugepages back: {e}");
            }
        }
    }
}

/// Every `<prefix>map_<n>` file in every hugetlbfs.
fn hugepage_files(prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for m in hugetlbfs_mounts() {
        for e in std::fs::read_dir(&m).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix("map_"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                out.push(e.path());
            }
        }
    }
    out
}

fn runtime_dir(prefix: &str) -> PathBuf {
    // scrubd runs as root in these tests (hugepages need it), so EAL uses /var/run/dpdk.
    Path::new("/var/run/dpdk").join(prefix)
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn hugepages_mode_leaves_nothing_and_reclaims_after_sigkill() {
    let _g = lock();
    let s = Scenario::new("hugepages");
    let _pages = match Hugepages::reserve(&s.path("hugetlbfs")) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED hugepages_mode_leaves_nothing_and_reclaims_after_sigkill: {why}");
            return;
        }
    };
    let cfg = s.config_with(
        "0,1",
        &[1],
        "net_null0,no-rx=1",
        "net_null1,no-rx=1",
        "duration_s = 60",
        8191,
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    let from = "memory = \"no-huge\"\nmemory_mb = 1024";
    assert!(text.contains(from));
    std::fs::write(
        &cfg,
        text.replace(from, "memory = \"hugepages\"\nmemory_mb = 128"),
    )
    .unwrap();
    let prefix = format!("scrubd-test-hugepages-{}", std::process::id());
    assert!(text.contains(&format!("file_prefix = \"{prefix}\"")));
    let sock = s.path("scrubd.sock");
    assert!(hugepage_files(&prefix).is_empty() && !runtime_dir(&prefix).exists());
    let free_before = free_pages();

    // Clean exit (SIGTERM): the files exist while it runs, none after.
    let child = spawn_until_socket(&cfg, &sock);
    let held = hugepage_files(&prefix);
    assert!(!held.is_empty(), "EAL maps its memory from hugepage files");
    assert!(runtime_dir(&prefix).join("config").exists());
    signal(&child, "TERM");
    let out = wait_with_limit(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        hugepage_files(&prefix),
        Vec::<PathBuf>::new(),
        "no hugepage file after a clean exit"
    );
    assert!(
        !runtime_dir(&prefix).exists(),
        "no runtime dir after a clean exit"
    );
    eprintln!(
        "clean exit: {} hugepage files while running, 0 after; free pages {free_before} before, {} after",
        held.len(),
        free_pages()
    );

    // SIGKILL: the files stay and hold their pages...
    let child = spawn_until_socket(&cfg, &sock);
    signal(&child, "KILL");
    let _ = wait_with_limit(child, Duration::from_secs(30));
    let left = hugepage_files(&prefix);
    assert!(
        !left.is_empty(),
        "a killed process leaves its hugepage files"
    );
    assert!(runtime_dir(&prefix).exists());
    let free_killed = free_pages();
    // ...`--check` does not complain about them (start-up will reclaim them)...
    let mut check = scrubd();
    check.arg("--config").arg(&cfg).arg("--check");
    let c = run_with_limit(check, Duration::from_secs(30));
    assert!(c.status.success(), "{}", show(&c));
    assert_eq!(hugepage_files(&prefix), left, "--check removes nothing");
    // ...and the next start with the same prefix takes them back, then leaves nothing.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("duration_s = 60", "duration_s = 0.3")).unwrap();
    let out = run_ok(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    let mib = left.len() * 2;
    assert!(
        err.contains(&format!(
            "reclaimed what a dead process with prefix \"{prefix}\" left: {} hugepage file(s), {mib} MiB, its runtime directory",
            left.len()
        )),
        "{err}"
    );
    assert!(hugepage_files(&prefix).is_empty() && !runtime_dir(&prefix).exists());
    eprintln!(
        "after SIGKILL: {} files ({mib} MiB) left, free pages {free_killed}; after the restart: 0 files, free pages {}",
        left.len(),
        free_pages()
    );
}
