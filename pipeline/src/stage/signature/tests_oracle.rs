//! The prefilter must never change a verdict: on every shared capture, the prefiltered stage
//! finds exactly the rules a brute-force oracle (every rule verified on every packet) finds,
//! for ET Open as loaded.

use std::sync::Arc;

use super::tests::et_files;
use super::*;
use crate::testutil::{capture_files, pcaps_dir, read_frames};

/// Compares on every frame of every capture (up to `per_capture` frames each) and returns
/// (frames compared, frames where some rule matched).
fn compare(rules: CompiledRules, per_capture: usize) -> (usize, usize) {
    let Ok(dir) = pcaps_dir() else {
        println!("skipped: no shared/pcaps");
        return (0, 0);
    };
    let mut st = SignatureStage::new(Arc::new(rules));
    let (mut frames, mut with_match) = (0, 0);
    for path in capture_files(&dir).unwrap() {
        for f in read_frames(&path).unwrap().iter().take(per_capture) {
            let Ok(hdr) = crate::wire::parse::parse(f) else {
                continue;
            };
            let want = st.oracle_matches(f, &hdr);
            let got = st.prefiltered_matches(f, &hdr);
            assert_eq!(got, want, "{} frame {frames}", path.display());
            frames += 1;
            with_match += usize::from(!want.is_empty());
        }
    }
    (frames, with_match)
}

/// Rules cut from the captures' own payloads, so that many frames match something: contents
/// at offsets (absolute, relative, nocase, negated), pcre, byte_test and isdataat on the same
/// bytes, dns.query and http.uri on what the frames carry.
fn capture_rules(per_capture: usize) -> String {
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let Ok(dir) = pcaps_dir() else {
        return String::new();
    };
    let mut out = String::new();
    let mut sid = 9_000_000;
    for path in capture_files(&dir).unwrap() {
        let frames = read_frames(&path).unwrap();
        for (k, f) in frames.iter().enumerate().step_by(97).take(per_capture) {
            let Ok(hdr) = crate::wire::parse::parse(f) else {
                continue;
            };
            let Some(ip) = hdr.ip() else { continue };
            let s = usize::from(ip.payload_off);
            let p = f
                .get(s..(s + usize::from(ip.payload_len)).min(f.len()))
                .unwrap_or(&[]);
            if p.len() < 12 {
                continue;
            }
            let o = k % (p.len() - 8);
            let c = &p[o..o + 4];
            let d = &p[o + 4..o + 8];
            let proto = ["ip", "tcp", "udp"][k % 3];
            let opts = [
                format!("content:\"|{}|\"; offset:{o}; depth:4;", hex(c)),
                format!(
                    "content:\"|{}|\"; content:\"|{}|\"; distance:0; within:4;",
                    hex(c),
                    hex(d)
                ),
                format!(
                    "content:\"|{}|\"; nocase; content:!\"|{}|\"; distance:0; within:4;",
                    hex(c),
                    hex(d)
                ),
                format!(
                    "content:\"|{}|\"; byte_test:1,=,{},0,relative; isdataat:3,relative;",
                    hex(c),
                    d[0]
                ),
                format!(
                    "content:\"|{}|\"; pcre:\"/^\\x{:02x}\\x{:02x}/R\";",
                    hex(c),
                    d[0],
                    d[1]
                ),
                format!(
                    "content:\"|{}|\"; endswith; dsize:{};",
                    hex(&p[p.len() - 4..]),
                    p.len()
                ),
                "dns.query; content:\"com\"; nocase;".to_string(),
                "http.uri; content:\"/\"; startswith;".to_string(),
            ];
            let opt = &opts[(k / 97) % opts.len()];
            out.push_str(&format!(
                "alert {proto} any any -> any any (msg:\"cut {k}\"; {opt} sid:{sid};)\n"
            ));
            sid += 1;
        }
    }
    out
}

fn et(sample: Option<usize>, extra: &str) -> Option<CompiledRules> {
    let files = et_files()?;
    let (mut set, _) = RuleSet::load_files(&files, &suricata_default_vars(), false).unwrap();
    if let Some(n) = sample {
        set.sample(n);
    }
    let (extra, report) = RuleSet::parse_lenient(extra, "cut.rules", &suricata_default_vars());
    assert!(report.failures.is_empty(), "{}", report.render(5));
    let mut rules = set.rules().to_vec();
    rules.extend(extra.rules().iter().cloned());
    Some(RuleSet::from_rules(rules).compile().unwrap())
}

/// A sample of ET Open (every rule class, spread over all files) on the first frames of every
/// capture: fast enough for every test run.
#[test]
fn prefiltered_stage_agrees_with_brute_force_on_shared_captures() {
    let Some(rules) = et(Some(1000), &capture_rules(40)) else {
        println!("skipped: no ET Open rules beside the repository");
        return;
    };
    let (frames, hits) = compare(rules, 300);
    println!("{frames} frames compared, {hits} with a matching rule");
}

/// The same with all of ET Open on every frame of every capture (release: a few minutes).
#[test]
#[ignore = "long: run with --release -- --ignored"]
fn full_et_open_agrees_with_brute_force_on_all_captures() {
    let Some(rules) = et(None, &capture_rules(200)) else {
        return;
    };
    let (frames, hits) = compare(rules, usize::MAX);
    println!("{frames} frames compared, {hits} with a matching rule");
}

/// suricata-verify bug-4376: an HTTP download in VLAN 3136. Suricata raises sid 1 (http.host
/// on the request) once and sid 2 (http.stat_code 200 on the response) once; per packet, the
/// request head and the response head each come in one packet, so the counts agree.
#[test]
fn suricata_verify_bug_4376_alerts_as_suricata_does() {
    let Ok(dir) = pcaps_dir() else {
        println!("skipped: no shared/pcaps");
        return;
    };
    let case = dir.join("suricata-verify/bug-4376");
    let text = std::fs::read_to_string(case.join("test.rules")).unwrap();
    let rules = CompiledRules::from_text(&text, "test.rules", &Vars::new()).unwrap();
    let mut st = SignatureStage::new(Arc::new(rules));
    for f in read_frames(&case.join("syn_retransmit_with_ts.pcap")).unwrap() {
        if let Ok(hdr) = crate::wire::parse::parse(&f) {
            st.process(&f, &hdr, &crate::Meta::default());
        }
    }
    assert_eq!(st.counters(), &[1, 1]);
}
