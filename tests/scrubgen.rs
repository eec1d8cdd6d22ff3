//! The end-to-end harness at CI size: scrubd and `scrubgen run` as two DPDK processes over
//! net_memif (and dpdk-testpmd io forwarding as the baseline), at a small rate for a second,
//! on the profile whose right answer is known (perf/profiles/exact.toml). Asserts the ground
//! truth exactly: every spoofed SYN answered with a cookie, every legitimate client
//! authenticated and every data segment delivered, every other attack packet dropped, no false
//! pass, no false drop; and scrubd's own counters equal the generator's (sent = scrubd's rx,
//! passed = forwarded, answered = replied), also the memif PMD's counters in scrubd's summary
//! although the generator disconnected before scrubd stopped. The baseline proves the ground
//! truth can see a false pass: testpmd forwards the attack, and each packet counts as one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Builds the generator (a binary of the perf package, which `cargo test` of this package does
/// not build) with the cargo and profile that built scrubd, and returns its path.
fn scrubgen() -> PathBuf {
    let scrubd = Path::new(env!("CARGO_BIN_EXE_scrubd"));
    let profile_dir = scrubd.parent().expect("scrubd has a directory");
    let target = profile_dir.parent().expect("profile dir has a parent");
    let mut c = Command::new(env!("CARGO"));
    c.args([
        "build",
        "-q",
        "-p",
        "perf",
        "--bin",
        "scrubgen",
        "--target-dir",
    ])
    .arg(target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    let st = c.status().expect("run cargo build for scrubgen");
    assert!(st.success(), "cargo build -p perf --bin scrubgen failed");
    profile_dir.join("scrubgen")
}

/// Runs `scrubgen bench` for one second, once, on one worker, on `profile` (in perf/profiles)
/// with `args`, against the scrubd this test built, into a fresh directory named for `tag`;
/// returns its exit status, its stderr, its report (scrubgen.json; a missing or broken one
/// fails the test with what the bench said) and the directory, which the caller removes.
fn bench(
    tag: &str,
    profile: &str,
    args: &[&str],
) -> (ExitStatus, String, serde_json::Value, PathBuf) {
    let gen = scrubgen();
    let out = std::env::temp_dir().join(format!("scrubgen-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new(&gen)
        .arg("bench")
        .arg("--profiles")
        .arg(root.join("perf/profiles").join(profile))
        .args(["--seconds", "1", "--repeat", "1", "--workers", "1"])
        .args(args)
        .arg("--scrubd")
        .arg(env!("CARGO_BIN_EXE_scrubd"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run scrubgen bench");
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    let report = serde_json::from_str(
        &std::fs::read_to_string(out.join("scrubgen.json"))
            .unwrap_or_else(|e| panic!("no report ({e}); scrubgen bench said:\n{stderr}")),
    )
    .expect("report is JSON");
    (run.status, stderr, report, out)
}

#[test]
fn harness_ground_truth_is_exact_at_a_small_rate() {
    let _serial = common::lock();
    let (status, stderr, report, out) = bench(
        "exact",
        "exact.toml",
        &["--rate", "20000", "--expect-exact"],
    );
    for f in [
        "scrubgen.md",
        "scrubgen-mpps.svg",
        "scrubgen-latency.svg",
        "exact-w1-r1-scrubd.hgrm",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let runs = report["runs"].as_array().expect("runs");
    let find = |tool: &str| {
        runs.iter()
            .find(|r| r["tool"] == tool)
            .unwrap_or_else(|| panic!("no {tool} run: {stderr}"))
    };
    let class = |run: &serde_json::Value, name: &str| -> serde_json::Value {
        run["generator"]["classes"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["class"] == name).cloned())
            .unwrap_or_else(|| panic!("no class {name} in {run}"))
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));

    let s = find("scrubd");
    let g = &s["generator"];
    assert_eq!(n(g, "false_pass"), 0, "{g}");
    assert_eq!(n(g, "false_drop"), 0, "{g}");
    let syn = class(s, "syn-flood");
    assert!(n(&syn, "sent") > 1000, "{syn}");
    assert_eq!(
        n(&syn, "answered"),
        n(&syn, "sent"),
        "every spoofed SYN answered"
    );
    let data = class(s, "legit-data");
    assert!(n(&data, "sent") > 100, "{data}");
    assert_eq!(
        n(&data, "passed"),
        n(&data, "sent"),
        "every data segment delivered"
    );
    let again = class(s, "legit-syn-again");
    let rst = class(s, "legit-rst");
    assert!(n(&rst, "sent") > 0, "clients answered cookies: {rst}");
    assert_eq!(n(&again, "sent"), n(&rst, "sent"), "one SYN again per RST");
    assert_eq!(
        n(&again, "passed"),
        n(&again, "sent"),
        "authenticated SYNs pass"
    );
    for c in ["ack-flood", "udp-reflection", "icmp-flood", "signature-hit"] {
        let v = class(s, c);
        assert!(n(&v, "sent") > 0, "{v}");
        assert_eq!(n(&v, "dropped"), n(&v, "sent"), "{c} dropped");
    }
    let miss = class(s, "signature-miss");
    assert_eq!(n(&miss, "passed"), n(&miss, "sent"), "{miss}");
    // Conservation against scrubd's own counters.
    let d = &s["scrubd"];
    assert_eq!(n(d, "rx"), n(g, "sent"), "{d}");
    assert_eq!(n(d, "forwarded"), n(g, "passed"), "{d}");
    assert_eq!(n(d, "replied"), n(g, "answered"), "{d}");
    assert_eq!(d["conserved"], true, "{d}");
    // The NIC cross-check: net_memif zeroes its counters when the generator disconnects,
    // before scrubd stops; the summary still has what the PMD counted while it ran.
    assert_eq!(n(d, "eth_ipackets"), n(d, "rx"), "outside PMD rx: {d}");
    assert_eq!(
        n(d, "eth_opackets_inside"),
        n(d, "forwarded"),
        "inside PMD tx: {d}"
    );
    assert_eq!(d["agrees_with_generator"], true, "{d}");
    assert!(
        status.success(),
        "--expect-exact failed although the checks above passed: {stderr}"
    );

    // The baseline forwards everything: each attack packet it forwards is counted as a false
    // pass. (testpmd io forwarding may lose a burst while its second memif link comes up, so
    // "every attack packet" is bounded, not exact, here.)
    let t = find("testpmd");
    let mut attack_sent = 0;
    for c in [
        "syn-flood",
        "ack-flood",
        "udp-reflection",
        "icmp-flood",
        "signature-hit",
    ] {
        let v = class(t, c);
        assert_eq!(n(&v, "false_pass"), n(&v, "passed"), "{v}");
        attack_sent += n(&v, "sent");
    }
    let fp = n(&t["generator"], "false_pass");
    assert!(
        attack_sent > 0 && fp * 100 >= attack_sent * 95,
        "testpmd forwarded {fp} of {attack_sent} attack packets: {}",
        t["generator"]
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Flat out, scrubd's outside TX ring may refuse SYN-ACKs: each SYN-ACK the stage built is
/// then either sent (replied) or counted as refused (reply_tx_full), never both, never neither
/// (`syncookie.syn_answered` used to include the refused ones with nothing to tell them apart).
#[test]
fn every_syn_ack_built_is_sent_or_counted_as_refused() {
    let _serial = common::lock();
    let (status, stderr, report, out) = bench("flat", "syn-flood.toml", &["--no-baseline"]);
    assert!(status.success(), "{stderr}");
    let d = &report["runs"][0]["scrubd"];
    let n = |k: &str| d[k].as_u64().unwrap_or_else(|| panic!("{k} in {d}"));
    assert!(n("syn_answered") > 0, "{d}");
    assert_eq!(
        n("syn_answered") + n("ack_validated"),
        n("replied") + n("reply_tx_full") + n("reply_failed"),
        "{d}"
    );
    assert_eq!(n("tx_full"), 0, "nothing is forwarded in a SYN flood: {d}");
    assert_eq!(d["agrees_with_generator"], true, "{d}");
    let _ = std::fs::remove_dir_all(&out);
}
