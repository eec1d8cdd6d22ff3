//! FlowSpec routes as the BGP bridge hands them over (issue 16): component names and values and
//! extended communities, every one chosen by the fuzzer — the names and values from ExaBGP's
//! vocabulary with fuzzed numbers, operators and prefixes, or arbitrary text — then the rules
//! that parse are built into a table and judge fuzzed frames.
//!
//! Asserted, because it holds for every input: parsing, building and judging never panic, and a
//! route refused by the parser names why (its error renders to a non-empty message).
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pipeline::stage::flowspec::{FlowAction, FlowRule, FlowspecStage, FlowspecTable};
use pipeline::{Direction, Meta};

const KEYS: &[&str] = &[
    "destination-ipv4",
    "source-ipv4",
    "destination-ipv6",
    "source-ipv6",
    "destination",
    "source",
    "protocol",
    "next-header",
    "port",
    "destination-port",
    "source-port",
    "packet-length",
    "tcp-flags",
    "fragment",
    "dscp",
    "icmp-type",
];
const WORDS: &[&str] = &[
    "=",
    ">",
    "<",
    ">=",
    "<=",
    "!=",
    "&",
    "tcp",
    "udp",
    "icmp",
    "syn",
    "ack",
    "fin",
    "rst",
    "push",
    "urgent",
    "is-fragment",
    "first-fragment",
    "last-fragment",
    "dont-fragment",
    "!",
    "/",
    ":",
    ".",
    "0",
    "80",
    "443",
    "65535",
    "65536",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "2001:db8::/32",
    "::/0",
    "192.0.2.1/32/0",
];
const COMMUNITIES: &[&str] = &[
    "traffic-rate:0:0",
    "traffic-rate:65000:1000",
    "traffic-rate:0:1e9",
    "redirect:65000:1",
    "mark 10",
    "0x800600000000",
    "",
];

fn text(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    if u.ratio(1, 4)? {
        let n = u.int_in_range(0..=24)?;
        return Ok(String::from_utf8_lossy(u.bytes(n)?).into_owned());
    }
    let mut s = String::new();
    for _ in 0..u.int_in_range(1..=4)? {
        if u.ratio(1, 3)? {
            s.push_str(&u.int_in_range(0u32..=70_000)?.to_string());
        } else {
            s.push_str(u.choose(pool)?);
        }
    }
    Ok(s)
}

fn route(u: &mut Unstructured<'_>) -> Result<(BTreeMap<String, Vec<String>>, Vec<String>)> {
    let mut components = BTreeMap::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let key = if u.ratio(1, 8)? {
            text(u, WORDS)?
        } else {
            (*u.choose(KEYS)?).to_string()
        };
        let mut vals = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            vals.push(text(u, WORDS)?);
        }
        components.insert(key, vals);
    }
    let mut communities = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        communities.push(if u.ratio(1, 2)? {
            (*u.choose(COMMUNITIES)?).to_string()
        } else {
            text(u, COMMUNITIES)?
        });
    }
    Ok((components, communities))
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut rules = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let (components, communities) = route(u)?;
        let parsed = FlowAction::from_communities(&communities)
            .and_then(|a| FlowRule::parse(&components, a));
        match parsed {
            Ok(r) => rules.push(r),
            Err(e) => assert!(!e.to_string().is_empty(), "a refusal names its reason"),
        }
    }
    let tsc_hz = u.int_in_range(1u64..=5_000_000_000)?;
    let Ok(table) = FlowspecTable::build(rules, tsc_hz) else {
        return Ok(());
    };
    let mut stage = FlowspecStage::new(Arc::new(table));
    let mut tsc = u.arbitrary::<u64>()? >> 8;
    while !u.is_empty() {
        let n = u.int_in_range(0..=128)?;
        let frame = u.bytes(n)?;
        tsc = tsc.wrapping_add(u.int_in_range(0u64..=10_000_000)?);
        if let Ok(hdr) = pipeline::wire::parse::parse(frame) {
            let meta = Meta {
                port: 0,
                dir: Direction::Inbound,
                tsc,
            };
            let _ = stage.process(&hdr, &meta);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
