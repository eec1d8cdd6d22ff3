//! Runs the built `hugepage-setup` binary: read-only commands against the real /sys and /proc,
//! changing commands only against a fake tree in a tempdir.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const REAL_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hugepage-setup"))
        .args(args)
        .output()
        .expect("spawn hugepage-setup")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A minimal sysfs/procfs: 2M and 1G pools, one NUMA node.
fn fake_tree(total_2m: u64, free_2m: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let put = |rel: &str, v: &str| {
        let p = dir.path().join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, v).expect("write");
    };
    for (size, total, free) in [("2048kB", total_2m, free_2m), ("1048576kB", 0, 0)] {
        for base in [
            "sys/kernel/mm/hugepages".to_owned(),
            "sys/devices/system/node/node0/hugepages".to_owned(),
        ] {
            put(
                &format!("{base}/hugepages-{size}/nr_hugepages"),
                &format!("{total}\n"),
            );
            put(
                &format!("{base}/hugepages-{size}/free_hugepages"),
                &format!("{free}\n"),
            );
            put(&format!("{base}/hugepages-{size}/surplus_hugepages"), "0\n");
        }
        put(
            &format!("sys/kernel/mm/hugepages/hugepages-{size}/resv_hugepages"),
            "0\n",
        );
    }
    put("proc/meminfo", "Hugepagesize:       2048 kB\n");
    put(
        "proc/self/mountinfo",
        "23 27 0:22 / /sys rw - sysfs sysfs rw\n",
    );
    dir
}

fn roots(dir: &Path) -> [String; 4] {
    [
        "--sysfs-root".to_owned(),
        dir.join("sys").display().to_string(),
        "--procfs-root".to_owned(),
        dir.join("proc").display().to_string(),
    ]
}

#[test]
fn status_json_against_real_sysfs() {
    if !Path::new(REAL_2M).is_dir() {
        eprintln!("skipped: {REAL_2M} absent (no 2M hugepages on this kernel)");
        return;
    }
    let out = run(&["status", "--json"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let sizes = v["sizes"].as_array().expect("sizes array");
    let two = sizes
        .iter()
        .find(|s| s["size"] == "2048kB")
        .expect("2048kB listed");
    assert_eq!(two["size_kib"], 2048);
    let real_total: u64 = fs::read_to_string(format!("{REAL_2M}/nr_hugepages"))
        .expect("read")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(two["total"].as_u64(), Some(real_total));
    assert!(v["mounts"].is_array());
}

#[test]
fn reserve_dry_run_against_real_sysfs_changes_nothing() {
    if !Path::new(REAL_2M).is_dir() {
        eprintln!("skipped: {REAL_2M} absent (no 2M hugepages on this kernel)");
        return;
    }
    let nr = format!("{REAL_2M}/nr_hugepages");
    let before = fs::read_to_string(&nr).expect("read");
    let out = run(&["reserve", "--pages", "64", "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("dry run: nothing changed"), "{stdout}");
    assert!(stdout.contains(&format!("write 64 to {nr} (")), "{stdout}");
    assert_eq!(fs::read_to_string(&nr).expect("read"), before);
}

#[test]
fn help_teaches_and_documents_exit_codes() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "DPDK",
        "hugetlbfs",
        "Examples:",
        "Exit status:",
        "2  usage error",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    assert!(!help.contains("sysfs-root"), "hidden option shown:\n{help}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["reserve"][..],
        &["reserve", "--pages", "0"],
        &["reserve", "--pages", "8", "--size", "2048"],
        &["nonsense"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn reserve_and_release_on_fake_tree() {
    let dir = fake_tree(0, 0);
    let r = roots(dir.path());
    let nr = dir
        .path()
        .join("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");

    let mut args: Vec<&str> = vec!["reserve", "--pages", "32", "--no-mount"];
    args.extend(r.iter().map(String::as_str));
    let out = run(&args);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&nr).expect("read").trim(), "32");
    assert!(text(&out.stdout).contains("2048kB pages system-wide: 0 -> 32"));

    // The fake kernel never updates free_hugepages, so all 32 look in use.
    let mut args: Vec<&str> = vec!["release"];
    args.extend(r.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("refusing to release 2048kB pages"));
    assert_eq!(fs::read_to_string(&nr).expect("read").trim(), "32");

    args.push("--force");
    let out = run(&args);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&nr).expect("read").trim(), "0");
}

#[test]
fn unsupported_size_exits_1_and_lists_sizes() {
    let dir = fake_tree(0, 0);
    let mut args: Vec<&str> = vec!["reserve", "--pages", "1", "--size", "16M"];
    let r = roots(dir.path());
    args.extend(r.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("page size 16384kB is not supported by this kernel; supported sizes: 2048kB (2M), 1048576kB (1G)"),
        "{err}"
    );
}

/// `hugepage-setup status | head` ends quietly once the reader has gone: no error on stderr,
/// and the status a shell shows for a command SIGPIPE ended (141), as before the SIGPIPE
/// handler was dropped for a safe EPIPE check.
#[test]
fn status_into_a_closed_pipe_exits_141_quietly() {
    let dir = fake_tree(0, 0);
    // Far more output than a pipe buffer holds, so a write fails however early the child
    // starts writing relative to the read end being closed below.
    let mut mountinfo = String::new();
    for i in 0..20_000 {
        mountinfo.push_str(&format!(
            "{} 27 0:50 / /mnt/huge{i} rw,relatime - hugetlbfs hugetlbfs rw,pagesize=2M\n",
            100 + i
        ));
    }
    fs::write(dir.path().join("proc/self/mountinfo"), mountinfo).expect("write mountinfo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hugepage-setup"))
        .arg("status")
        .args(roots(dir.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hugepage-setup");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(141),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
}
