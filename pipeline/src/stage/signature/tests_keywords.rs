//! Keyword semantics (Suricata's meaning, per packet), each on a rule shaped like the ET Open
//! rules that use it.

use std::sync::Arc;

use super::tests::{et_vars, packet, tcp, udp};
use super::*;
use crate::headers::Transport;
use crate::stage::StageResult;
use crate::{DropReason, Headers, Meta, Verdict};

fn st(text: &str) -> SignatureStage {
    let rules = CompiledRules::from_text(text, "kw.rules", &et_vars())
        .unwrap_or_else(|e| panic!("{text}\n{e}"));
    SignatureStage::new(Arc::new(rules))
}

/// Whether rule 0 fires on the packet (hit counter moves).
fn fires(st: &mut SignatureStage, p: &(Vec<u8>, Headers)) -> bool {
    let before = st.counters()[0];
    st.process(&p.0, &p.1, &Meta::default());
    st.counters()[0] > before
}

fn u(payload: &[u8]) -> (Vec<u8>, Headers) {
    packet("198.51.100.1", "10.0.0.5", udp(40000, 123), payload)
}

fn t(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> (Vec<u8>, Headers) {
    packet(
        "198.51.100.1",
        "10.0.0.5",
        tcp(sport, dport, flags),
        payload,
    )
}

fn one(opts: &str, payload: &[u8]) -> bool {
    let mut s = st(&format!("alert udp any any -> any any ({opts} sid:1;)"));
    fires(&mut s, &u(payload))
}

#[test]
fn byte_test_reads_and_compares_like_suricata() {
    // emerging-dos NTP MON_LIST: mode bits tested with & and !&.
    let ntp = "content:\"|00 02 2A|\"; offset:1; depth:3; byte_test:1,!&,128,0; byte_test:1,&,4,0; byte_test:1,&,2,0; byte_test:1,&,1,0;";
    assert!(one(ntp, b"\x17\x00\x02\x2a\x00"));
    assert!(!one(ntp, b"\x97\x00\x02\x2a\x00"), "response bit set");
    assert!(!one(ntp, b"\x16\x00\x02\x2a\x00"), "mode 6, not 7");
    assert!(one("byte_test:2,>,0x1000,1;", b"\x00\x10\x01"));
    assert!(!one("byte_test:2,>,0x1000,1;", b"\x00\x10\x00"));
    assert!(one("byte_test:2,=,1,0,little;", b"\x01\x00"));
    assert!(one(
        "content:\"len=\"; byte_test:3,>=,100,0,relative,string,dec;",
        b"xlen=123;"
    ));
    assert!(!one(
        "content:\"len=\"; byte_test:3,>=,100,0,relative,string,dec;",
        b"xlen=099;"
    ));
    assert!(
        one("byte_test:0,<,1000,2,string,dec;", b"ab999"),
        "0 bytes: the rest"
    );
    assert!(one("byte_test:1,=,3,0,bitmask 0x30;", b"\x3f"));
    assert!(
        !one("byte_test:4,=,1,0;", b"\x00\x00\x01"),
        "out of data never matches"
    );
}

#[test]
fn byte_jump_and_isdataat_move_and_test_the_cursor() {
    // Length-prefixed field, then the content right after it (Suricata's jump from the end
    // of the bytes read).
    let j = "byte_jump:1,0; content:\"X\"; within:1;";
    assert!(one(j, b"\x03abcX"));
    assert!(!one(j, b"\x02abcX"));
    assert!(one(
        "byte_jump:1,0,multiplier 2; content:\"X\"; within:1;",
        b"\x02abcdX"
    ));
    assert!(one(
        "byte_jump:1,0,from_beginning; content:\"X\"; within:1;",
        b"\x03abX"
    ));
    assert!(one(
        "byte_jump:1,0,align; content:\"X\"; within:1;",
        b"\x02abcX"
    ));
    assert!(
        !one("byte_jump:1,0;", b"\x09ab"),
        "jumping past the end fails"
    );
    assert!(one("isdataat:3;", b"abcd"));
    assert!(!one("isdataat:4;", b"abcd"));
    assert!(one("isdataat:!4;", b"abcd"));
    assert!(one("content:\"ab\"; isdataat:2,relative;", b"abcd"));
    assert!(!one("content:\"ab\"; isdataat:3,relative;", b"abcd"));
}

#[test]
fn pcre_flags_anchoring_and_relative() {
    assert!(one("pcre:\"/a.c/\";", b"xxabc"));
    assert!(!one("pcre:\"/A.C/\";", b"xxabc"));
    assert!(one("pcre:\"/A.C/i\";", b"xxabc"));
    assert!(!one("pcre:\"/a.c/\";", b"a\nc"));
    assert!(one("pcre:\"/a.c/s\";", b"a\nc"));
    assert!(one("pcre:\"/^b$/m\";", b"a\nb\nc"));
    assert!(one("pcre:\"/a b c/x\";", b"abc"));
    assert!(!one("pcre:\"/^b/\";", b"ab"));
    // R: the subject starts where the previous match ended, so ^ anchors there.
    assert!(one("content:\"a\"; pcre:\"/^b/R\";", b"ab"));
    assert!(!one("content:\"a\"; pcre:\"/^c/R\";", b"abc"));
    assert!(one("pcre:!\"/zz/\";", b"abc"));
    assert!(
        one("pcre:\"/\\x00\\xff/\";", b"a\x00\xffb"),
        "bytes, not UTF-8"
    );
    // Unsupported flags and PCRE-only syntax skip the rule, counted under pcre.
    for (opts, why) in [
        ("pcre:\"/a/U\";", "pcre flag 'U'"),
        ("pcre:\"/(a)\\1/\";", "not supported by the regex engine"),
        ("pcre:\"/a(?=b)/\";", "not supported by the regex engine"),
    ] {
        let text = format!("alert udp any any -> any any ({opts} sid:1;)");
        let (set, report) = RuleSet::parse_lenient(&text, "kw", &et_vars());
        assert!(set.is_empty(), "{opts}");
        let e = &report.failures[0].errors[0];
        assert!(e.unsupported && e.keyword.as_deref() == Some("pcre"), "{e}");
        assert!(e.message.contains(why), "{e}");
    }
}

#[test]
fn startswith_endswith_bsize_and_fast_pattern() {
    assert!(one("content:\"ab\"; startswith;", b"abc"));
    assert!(!one("content:\"bc\"; startswith;", b"abc"));
    assert!(one("content:\"bc\"; endswith;", b"abc"));
    assert!(!one("content:\"ab\"; endswith;", b"abc"));
    assert!(one(
        "content:\"a\"; content:\"c\"; distance:0; endswith;",
        b"abc"
    ));
    assert!(one("bsize:3;", b"abc"));
    assert!(!one("bsize:>3;", b"abc"));
    assert!(one("content:\"abcdef\"; fast_pattern:2,3;", b"xxabcdefx"));
    assert!(
        !one("content:\"abcdef\"; fast_pattern:2,3;", b"xxcdexx"),
        "the chop only prefilters"
    );
    assert!(one("content:\"abc\"; fast_pattern:only;", b"xabc"));
    let set = RuleSet::parse(
        "alert udp any any -> any any (content:\"abcdef\"; fast_pattern:2,3; sid:1;)",
        "kw",
        &et_vars(),
    )
    .unwrap();
    assert_eq!(set.rules()[0].contents[0].fast_pattern_chop, Some((2, 3)));
    assert!(RuleSet::parse(
        "alert udp any any -> any any (content:\"ab\"; fast_pattern:1,5; sid:1;)",
        "kw",
        &et_vars()
    )
    .is_err());
}

#[test]
fn flow_direction_and_established_per_packet() {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    let mut s =
        st("alert tcp any any -> any any (flow:established,to_server; content:\"x\"; sid:1;)");
    assert!(fires(&mut s, &t(40000, 80, ACK | PSH, b"x")));
    assert!(
        !fires(&mut s, &t(80, 40000, ACK | PSH, b"x")),
        "lower source port: from the server"
    );
    assert!(
        !fires(&mut s, &t(40000, 80, SYN, b"x")),
        "a SYN is not established"
    );
    let mut s = st("alert tcp any any -> any any (flow:to_client; sid:1;)");
    assert!(fires(&mut s, &t(80, 40000, SYN | ACK, b"")));
    assert!(!fires(&mut s, &t(40000, 80, SYN, b"")));
    // The header pins the server port: to_server holds whatever the port order.
    let mut s = st("alert tcp any any -> any 60000 (flow:established,to_server; sid:1;)");
    assert!(fires(&mut s, &t(80, 60000, ACK, b"")));
    // An HTTP request is to_server by what it is.
    let mut s = st("alert http any any -> any any (flow:established,to_server; http.method; content:\"GET\"; sid:1;)");
    assert!(fires(
        &mut s,
        &t(80, 8080, ACK | PSH, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ));
    // tcp-pkt (packets, not the stream) is what this box inspects anyway.
    let mut s =
        st("alert tcp-pkt any any -> any any (flow:established,to_server; content:\"x\"; sid:1;)");
    assert!(fires(&mut s, &t(40000, 80, ACK | PSH, b"x")));
    // http.start: request line and headers.
    let mut s = st(
        "alert http any any -> any any (http.start; content:\"GET / HTTP/1.1|0d 0a|Host\"; sid:1;)",
    );
    assert!(fires(
        &mut s,
        &t(40000, 80, ACK | PSH, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ));
    // UDP: every packet is "established" per packet.
    let mut s = st("alert udp any any -> any 123 (flow:established,to_server; sid:1;)");
    assert!(fires(&mut s, &u(b"x")));
    let bad = RuleSet::parse_lenient(
        "alert tcp any any -> any any (flow:only_stream; sid:1;)",
        "kw",
        &et_vars(),
    );
    assert!(bad.0.is_empty() && bad.1.failures[0].errors[0].unsupported);
}

#[test]
fn threshold_and_detection_filter_gate_the_action() {
    // suricata-verify tcp-session-syn-flood-drop-precedence, as a stateless rule: after 100
    // SYNs per source per second, drop.
    let mut s = st("drop tcp any any -> any any (flags:S,12; detection_filter:track by_src, count 100, seconds 1; msg:\"SYN flood mitigation\"; sid:1002;)");
    let syn = t(40000, 80, 0x02, b"");
    let mut drops = 0;
    for i in 0..200u64 {
        let m = Meta {
            tsc: i * 1_000_000, // 1 ms apart at the default 1 GHz
            ..Meta::default()
        };
        if let StageResult::Done(Verdict::Drop(DropReason::Signature(0))) =
            s.process(&syn.0, &syn.1, &m)
        {
            drops += 1;
        }
    }
    assert_eq!(drops, 100);
    // threshold type limit: at most `count` per window per source.
    let mut s = st("alert udp any any -> any any (content:\"x\"; threshold: type limit, track by_src, count 2, seconds 60; sid:1;)");
    let hits: Vec<bool> = (0..4).map(|_| fires(&mut s, &u(b"x"))).collect();
    assert_eq!(hits, [true, true, false, false]);
}

fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn sticky_buffers_on_one_packet() {
    // ET's DNS query rules: dns.query; content; dotprefix; endswith.
    let mut s = st("alert dns $HOME_NET any -> any any (msg:\"ET DNS Query to evil\"; dns.query; dotprefix; content:\".evil.example\"; nocase; endswith; sid:1;)");
    let q = |name: &str| packet("10.0.0.5", "192.0.2.53", udp(5353, 53), &dns_query(name));
    assert!(fires(&mut s, &q("www.Evil.example")));
    assert!(fires(&mut s, &q("evil.example")));
    assert!(!fires(&mut s, &q("notevil.example")));
    assert!(!fires(&mut s, &q("evil.example.org")));
    // HTTP request head in one packet.
    let mut s = st("alert http $HOME_NET any -> $EXTERNAL_NET any (flow:established,to_server; http.method; content:\"POST\"; http.uri; content:\"/gate.php\"; startswith; http.host; content:\"bad.example\"; bsize:11; http.user_agent; content:\"Mozilla/4.0\"; sid:1;)");
    let req = |host: &str| {
        let p = format!(
            "POST /gate.php?id=1 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/4.0 (x)\r\n\r\n"
        );
        packet("10.0.0.5", "192.0.2.80", tcp(40000, 80, 0x18), p.as_bytes())
    };
    assert!(fires(&mut s, &req("BAD.example")));
    assert!(fires(&mut s, &req("bad.example:8080")));
    assert!(!fires(&mut s, &req("bad.example.org")));
    // The same request head over UDP is no HTTP request.
    let mut s = st("alert udp any any -> any any (http.uri; content:\"/gate\"; sid:1;)");
    let p = b"POST /gate.php HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(!fires(
        &mut s,
        &packet("10.0.0.5", "192.0.2.80", udp(40000, 80), p)
    ));
    // TLS SNI.
    let mut s = st("alert tls $HOME_NET any -> $EXTERNAL_NET any (tls.sni; content:\"c2.example\"; endswith; sid:1;)");
    let hello = super::buffers::tests::client_hello(b"www.c2.example");
    assert!(fires(
        &mut s,
        &packet("10.0.0.5", "192.0.2.1", tcp(40000, 443, 0x18), &hello)
    ));
    let hello = super::buffers::tests::client_hello(b"c2.example.net");
    assert!(!fires(
        &mut s,
        &packet("10.0.0.5", "192.0.2.1", tcp(40000, 443, 0x18), &hello)
    ));
    // Not TLS at all.
    assert!(!fires(
        &mut s,
        &packet(
            "10.0.0.5",
            "192.0.2.1",
            tcp(40000, 443, 0x18),
            b"www.c2.example"
        )
    ));
    let _ = Transport::None;
}
