//! The whole pipeline, every stage enabled, on arbitrary frames: it must never panic, a reply
//! must fit the buffer it was written into, and a frame that is forwarded or dropped must come
//! back byte for byte as it went in (only a reply may rewrite the buffer).
//!
//! Input: an 8-byte header, then the frame.
//!
//! * byte 0: bytes of writable room after the frame (a reply may be longer than its packet).
//! * byte 1: bit 0 picks the policy (0: SYN cookies in auth mode protect every address; 1:
//!   SYN cookies in proxy mode protect only two prefixes, so TCP payloads to other addresses
//!   reach the rate limiter and the signature stage too, which unauthenticated TCP never does
//!   under policy 0); bits 1–2: how many times
//!   the frame is fed in (1–4, so rate limits and the allowlist see a repeat); bits 3–7: TSC
//!   step between repeats, in 2^16-tick units.
//! * bytes 2–7: the TSC of the first run (48 bits, little endian).
//!
//! Each iteration gets a fresh worker from a policy compiled once, so a crash reproduces from
//! its input alone; the tables are kept tiny to make that cheap.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pipeline::stage::signature::{CompiledRules, SignatureStage, Vars};
use pipeline::{Direction, Meta, PipelineConfig, Policy, Update, Verdict};

/// TSC ticks per second: 1 MHz makes the 48-bit TSC span years, i.e. many cookie counter
/// periods, rotations and rate-limit refills.
const TSC_HZ: u64 = 1_000_000;

const ROOM_MAX: usize = 255;

/// Every stage on; SYN cookies over the `PROTECTED` prefixes in `MODE`, both filled in per
/// policy. (A proxied connection needs a valid cookie ACK, which a fuzzer does not forge, so
/// forwarded packets stay as they came in this mode too.)
const CONFIG: &str = r#"
non_ip = "drop"

[acl]
allow = ["192.0.2.1", "192.0.2.128/25", "2001:db8:a::/48"]
deny = ["198.51.100.0/24", "203.0.113.7", "2001:db8:dead::/48", "::ffff:0:0/96"]

[syncookie]
protected = PROTECTED
mode = "MODE"
proxy_capacity = 16
counter_period_s = 8
allowlist_capacity = 16
allowlist_ttl_s = 30
rotate_every_s = 60

[ratelimit]
source_prefix_v4 = 24
source_prefix_v6 = 48
table_capacity = 16
reflection_ports = [53, 123, 1900, 11211]

[ratelimit.classes]
udp_reflection = { rate = 1, burst = 1 }
icmp = { rate = 2, burst = 2, mode = "fixed_window" }
tcp_syn = { rate = 1, burst = 2 }
ip_fragment = { rate = 1, burst = 1 }
other = { rate = 3, burst = 3 }

[[ratelimit.aggregate]]
dst = "10.0.0.0/8"
rate = 5
burst = 5

[[ratelimit.aggregate]]
dst = "2001:db8::/32"
rate = 5
burst = 5
"#;

/// Content rules covering every modifier (nocase, offset, depth, distance incl. negative,
/// within, hex, negation) and every action, plus header-only tests.
const RULES: &str = r#"
drop udp any any -> any 11211 (msg:"memcached stats"; content:"|00 00 00 00 00 01 00 00|stats"; depth:13; sid:1;)
drop udp any any -> any 53 (msg:"dns any"; content:"|00 00 ff 00 01|"; offset:12; sid:2;)
alert tcp any any -> any [80,8080] (msg:"http get"; content:"GET "; depth:4; content:"host:"; nocase; distance:0; within:200; sid:3;)
drop tcp any any -> any any (msg:"two parts"; content:"ab"; offset:2; depth:10; content:"cd"; distance:-1; within:6; content:!"zz"; distance:0; sid:4;)
pass ip 192.0.2.0/24 any -> any any (msg:"trusted"; content:"OK"; nocase; sid:5;)
drop icmp any any -> any any (msg:"big ping"; itype:8; dsize:>512; sid:6;)
drop tcp any any -> any 22 (msg:"xmas"; flags:FPU; sid:7;)
alert ip any any -> [10.0.0.0/8,2001:db8::/32] any (msg:"ttl"; ttl:<5; ip_proto:!tcp; sid:8;)
drop udp any 1024: <> any :1023 (msg:"hex and nocase"; content:"|de ad|BeEf"; nocase; content:"|00|"; distance:1; within:4; dsize:8<>600; sid:9;)
"#;

struct Fixture {
    /// [all addresses protected, only two prefixes protected]
    policies: [Policy; 2],
    rules: Arc<CompiledRules>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let policy = |protected: &str, mode: &str| {
            let text = CONFIG.replace("PROTECTED", protected).replace("MODE", mode);
            let cfg: PipelineConfig = toml::from_str(&text).expect("fuzz config parses");
            Policy::build(&cfg, TSC_HZ, *b"fuzz-cookie-key!").expect("fuzz policy builds")
        };
        // The signature stage is attached to each worker directly: the config path only reads
        // rules from files, and the rules are compiled here once, from memory.
        let rules = CompiledRules::from_text(RULES, "fuzz.rules", &Vars::new())
            .expect("fuzz rules compile");
        Fixture {
            policies: [
                policy(r#"["0.0.0.0/0", "::/0"]"#, "auth"),
                policy(r#"["10.0.0.0/8", "2001:db8::/32"]"#, "proxy"),
            ],
            rules: Arc::new(rules),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((head, frame)) = data.split_first_chunk::<8>() else {
        return;
    };
    let room = (usize::from(head[0] & 0x7f) * 2).min(ROOM_MAX);
    // The side of the box the frame enters from; repeats alternate sides, so one input can
    // record an outbound connection and then be judged as its inbound answer.
    let first_outbound = head[0] & 0x80 != 0;
    let policy = usize::from(head[1] & 1);
    let repeats = 1 + ((head[1] >> 1) & 3);
    let step = u64::from(head[1] >> 3) << 16;
    let mut tsc = u64::from_le_bytes([head[2], head[3], head[4], head[5], head[6], head[7], 0, 0]);

    let f = fixture();
    let mut p = f.policies[policy].worker();
    p.apply(&mut Update::Rules {
        acl: None,
        generation: 1,
        stage: Some(SignatureStage::new(Arc::clone(&f.rules))),
    });

    let mut buf = vec![0u8; frame.len() + room];
    for rep in 0..repeats {
        let dir = if first_outbound ^ (rep & 1 == 1) {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        buf[..frame.len()].copy_from_slice(frame);
        buf[frame.len()..].fill(0);
        let before = buf.clone();
        let v = p.process(&mut buf, frame.len(), &Meta { port: 0, dir, tsc });
        match v {
            Verdict::Reply { len } => assert!(
                usize::from(len) <= buf.len(),
                "reply of {len} bytes in a {}-byte buffer",
                buf.len()
            ),
            Verdict::Forward | Verdict::Drop(_) => {
                assert!(buf == before, "{v:?} changed the buffer")
            }
        }
        tsc = tsc.wrapping_add(step);
    }
    // The counters are read by the daemon's reports; reading them must not panic either.
    let _ = p.stage_counters();
    let _ = p.signature_hits();
});
