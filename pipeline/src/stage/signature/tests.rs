//! Behaviour tests for the whole stage: parser tables, content semantics against a brute-force
//! oracle, action precedence, header-only rules, real suricata-verify rules, and (ignored)
//! load-time and matching-speed measurements.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::headers::{Frag, IpHeaders, IpVersion, Net, TcpInfo, TcpOptions, Transport};
use crate::prefix::Prefix;
use crate::stage::StageResult;
use crate::{DropReason, Headers, Meta, Verdict};

const PAYLOAD_OFF: usize = 54;

fn vars() -> Vars {
    let mut v = Vars::new();
    v.insert("PROTECTED".into(), VarValue::One("192.0.2.0/24".into()));
    v.insert(
        "HOME_NET".into(),
        VarValue::Many(vec!["10.0.0.0/8".into(), "2001:db8::/32".into()]),
    );
    v.insert("HTTP_PORTS".into(), VarValue::One("[80,8080]".into()));
    v
}

pub(crate) fn tcp(sport: u16, dport: u16, flags: u8) -> Transport {
    Transport::Tcp(TcpInfo {
        sport,
        dport,
        seq: 1,
        ack: 0,
        flags,
        window: 1000,
        options: TcpOptions::default(),
    })
}

pub(crate) fn udp(sport: u16, dport: u16) -> Transport {
    Transport::Udp { sport, dport }
}

/// A frame whose payload sits at `PAYLOAD_OFF`, and headers describing it.
pub(crate) fn packet(
    src: &str,
    dst: &str,
    transport: Transport,
    payload: &[u8],
) -> (Vec<u8>, Headers) {
    let src: IpAddr = src.parse().unwrap();
    let dst: IpAddr = dst.parse().unwrap();
    let proto = match transport {
        Transport::Tcp(_) => 6,
        Transport::Udp { .. } => 17,
        Transport::Icmp { .. } => 1,
        Transport::Icmpv6 { .. } => 58,
        _ => 47,
    };
    let mut frame = vec![0u8; PAYLOAD_OFF];
    frame.extend_from_slice(payload);
    let hdr = Headers {
        vlans: [0; 2],
        vlan_count: 0,
        ethertype: if src.is_ipv4() { 0x0800 } else { 0x86dd },
        l3_off: 14,
        net: Net::Ip(IpHeaders {
            version: if src.is_ipv4() {
                IpVersion::V4
            } else {
                IpVersion::V6
            },
            src,
            dst,
            proto,
            ttl: 64,
            frag: Frag::None,
            ip_len: u16::try_from(frame.len() - 14).unwrap(),
            l4_off: 34,
            transport,
            payload_off: PAYLOAD_OFF as u16,
            payload_len: u16::try_from(payload.len()).unwrap(),
        }),
    };
    (frame, hdr)
}

fn stage(text: &str) -> SignatureStage {
    let rules = CompiledRules::from_text(text, "t.rules", &vars())
        .unwrap_or_else(|e| panic!("rules failed to load:\n{e}"));
    SignatureStage::new(Arc::new(rules))
}

fn run(st: &mut SignatureStage, p: &(Vec<u8>, Headers)) -> StageResult {
    st.process(&p.0, &p.1, &Meta::default())
}

fn udp_payload(payload: &[u8]) -> (Vec<u8>, Headers) {
    packet("198.51.100.1", "192.0.2.10", udp(40000, 11211), payload)
}

// ---------------------------------------------------------------- parser: valid rules → AST

fn base(action: Action, proto: Proto, sid: u32) -> Rule {
    Rule {
        action,
        proto,
        src: Expr::Any,
        sport: Expr::Any,
        direction: Direction::Forward,
        dst: Expr::Any,
        dport: Expr::Any,
        msg: String::new(),
        sid,
        rev: 0,
        contents: Vec::new(),
        flags: None,
        dsize: None,
        itype: None,
        icode: None,
        ip_proto: None,
        ttl: None,
        checks: Vec::new(),
        flow: None,
        threshold: None,
        location: Location {
            file: Arc::from("t.rules"),
            line: 1,
            column: 1,
        },
    }
}

fn cidr(s: &str) -> Expr<Prefix> {
    Expr::Leaf(s.parse().unwrap())
}

fn ports(lo: u16, hi: u16) -> Expr<PortRange> {
    Expr::Leaf(PortRange { lo, hi })
}

fn content(bytes: &[u8], f: impl FnOnce(&mut Content)) -> Content {
    let mut c = Content::new(bytes);
    f(&mut c);
    c
}

#[test]
fn valid_rules_parse_to_the_expected_ast() {
    type Case = (&'static str, fn() -> Rule);
    let cases: Vec<Case> = vec![
        (
            r#"drop udp any any -> $PROTECTED 11211 (msg:"memcached reflection"; content:"|00 00|"; depth:2; sid:100; rev:1;)"#,
            || Rule {
                dst: cidr("192.0.2.0/24"),
                dport: ports(11211, 11211),
                msg: "memcached reflection".into(),
                rev: 1,
                contents: vec![content(&[0, 0], |c| c.depth = Some(2))],
                ..base(Action::Drop, Proto::Udp, 100)
            },
        ),
        (
            r#"alert tcp [10.0.0.0/8,!10.1.0.0/16] :1023 <> $HOME_NET [80,443,8000:8080] (sid:2; classtype:attempted-dos; metadata:created_at 2024; reference:url,example.com;)"#,
            || Rule {
                src: Expr::List(vec![
                    cidr("10.0.0.0/8"),
                    Expr::Not(Box::new(cidr("10.1.0.0/16"))),
                ]),
                sport: ports(0, 1023),
                direction: Direction::Both,
                dst: Expr::List(vec![cidr("10.0.0.0/8"), cidr("2001:db8::/32")]),
                dport: Expr::List(vec![ports(80, 80), ports(443, 443), ports(8000, 8080)]),
                ..base(Action::Alert, Proto::Tcp, 2)
            },
        ),
        (
            r#"pass tcp any 1024: -> !192.0.2.1/32 !80 (flags:S+,CE; dsize:>100; ttl:<5; sid:3;)"#,
            || Rule {
                sport: ports(1024, 65535),
                dst: Expr::Not(Box::new(cidr("192.0.2.1/32"))),
                dport: Expr::Not(Box::new(ports(80, 80))),
                flags: Some(FlagsMatch {
                    flags: 0x02,
                    ignore: 0xc0,
                    mode: FlagsMode::All,
                }),
                dsize: Some(NumMatch {
                    lo: 101,
                    hi: 65535,
                    negated: false,
                }),
                ttl: Some(NumMatch {
                    lo: 0,
                    hi: 4,
                    negated: false,
                }),
                ..base(Action::Pass, Proto::Tcp, 3)
            },
        ),
        (
            r#"alert icmp 2001:db8::1 any -> any any (itype:8; icode:!0; dsize:10<>20; sid:5;)"#,
            || Rule {
                src: cidr("2001:db8::1/128"),
                itype: Some(NumMatch {
                    lo: 8,
                    hi: 8,
                    negated: false,
                }),
                icode: Some(NumMatch {
                    lo: 0,
                    hi: 0,
                    negated: true,
                }),
                dsize: Some(NumMatch {
                    lo: 11,
                    hi: 19,
                    negated: false,
                }),
                ..base(Action::Alert, Proto::Icmp, 5)
            },
        ),
        (
            r#"alert ip any any -> any any (ip_proto:gre; flags:!R; sid:6;)"#,
            || Rule {
                ip_proto: Some(NumMatch {
                    lo: 47,
                    hi: 47,
                    negated: false,
                }),
                flags: Some(FlagsMatch {
                    flags: 0x04,
                    ignore: 0,
                    mode: FlagsMode::Not,
                }),
                ..base(Action::Alert, Proto::Ip, 6)
            },
        ),
        (
            r#"alert tcp any any -> any any (flags:*SF; content:"x"; fast_pattern:only; content:!"y"; offset:3; sid:7;)"#,
            || Rule {
                flags: Some(FlagsMatch {
                    flags: 0x03,
                    ignore: 0,
                    mode: FlagsMode::Any,
                }),
                contents: vec![
                    content(b"x", |c| c.fast_pattern = true),
                    content(b"y", |c| {
                        c.negated = true;
                        c.offset = Some(3)
                    }),
                ],
                ..base(Action::Alert, Proto::Tcp, 7)
            },
        ),
        (
            r#"alert tcp any any -> any any (flags:0; dsize:0; sid:8;)"#,
            || Rule {
                flags: Some(FlagsMatch {
                    flags: 0,
                    ignore: 0,
                    mode: FlagsMode::Exact,
                }),
                dsize: Some(NumMatch {
                    lo: 0,
                    hi: 0,
                    negated: false,
                }),
                ..base(Action::Alert, Proto::Tcp, 8)
            },
        ),
    ];
    for (text, want) in cases {
        let set =
            RuleSet::parse(text, "t.rules", &vars()).unwrap_or_else(|e| panic!("{text}\n{e}"));
        assert_eq!(set.rules(), &[want()], "{text}");
    }

    // Contents with every modifier and escape.
    let text = r#"alert tcp any any -> any any (content:"GET "; offset:0; depth:4; content:"a\"b\;c\\|0d 0a|"; nocase; distance:-2; within:20; content:!"evil"; sid:4;)"#;
    let set = RuleSet::parse(text, "t.rules", &vars()).unwrap();
    assert_eq!(
        set.rules()[0].contents,
        vec![
            content(b"GET ", |c| {
                c.offset = Some(0);
                c.depth = Some(4)
            }),
            content(b"a\"b;c\\\r\n", |c| {
                c.nocase = true;
                c.distance = Some(-2);
                c.within = Some(20)
            }),
            content(b"evil", |c| c.negated = true),
        ]
    );
}

#[test]
fn comments_blank_lines_continuations_and_locations() {
    let text = "# header comment\n\nalert udp any any -> any 53 \\\n  (msg:\"dns\"; sid:1;)\n   \n  drop tcp any any -> any any (sid:2;)\n";
    let set = RuleSet::parse(text, "f.rules", &vars()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.rules()[0].msg, "dns");
    assert_eq!(set.rules()[0].location.line, 3);
    assert_eq!(
        (set.rules()[1].location.line, set.rules()[1].location.column),
        (6, 3)
    );
}

// ---------------------------------------------------------------- parser: errors

fn errors_of(text: &str) -> Vec<String> {
    match RuleSet::parse(text, "rules.rules", &vars()) {
        Ok(_) => panic!("expected errors for {text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn each_kind_of_error_names_file_line_column_and_keyword() {
    let h = "alert tcp any any -> any any ("; // options start at column 31
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{h}msg:\"x\"; lua:\"/a/\"; sid:1;)"), vec!["rules.rules:1:40: unsupported keyword 'lua'"]),
        (format!("{h}content:\"a\"; sid:1;)"), vec![]),
        (format!("{h}msg:\"x\";)"), vec!["rules.rules:1:39: rule has no sid"]),
        (format!("{h}sid:0;)"), vec!["rules.rules:1:35: 'sid' must be a positive integer, got '0'"]),
        (format!("{h}sid:1; sid:2;)"), vec!["rules.rules:1:38: duplicate 'sid'"]),
        (format!("{h}nocase; sid:1;)"), vec!["rules.rules:1:31: 'nocase' must follow a 'content'"]),
        (format!("{h}content:\"abc\"; depth:2; sid:1;)"), vec!["rules.rules:1:52: 'depth' 2 is shorter than the content (3 bytes)"]),
        // Relative to the buffer start on a buffer's first content, as in Suricata.
        (format!("{h}content:\"a\"; distance:1; sid:1;)"), vec![]),
        (
            format!("{h}content:\"a\"; content:\"b\"; offset:1; within:3; sid:1;)"),
            vec!["rules.rules:1:67: 'within' cannot be combined with offset/depth on one content"],
        ),
        (format!("{h}content:\"|4|\"; sid:1;)"), vec!["rules.rules:1:42: odd number of hex digits"]),
        (format!("{h}content:\"a\\x\"; sid:1;)"), vec!["rules.rules:1:41: invalid escape (only \\\" \\; \\: \\\\ are allowed)"]),
        (format!("{h}content:\"\"; sid:1;)"), vec!["rules.rules:1:39: empty content"]),
        (format!("{h}content:\"a\" x; sid:1;)"), vec!["rules.rules:1:42: unexpected text after the closing quote"]),
        (format!("{h}msg:\"abc; sid:1;)"), vec!["rules.rules:1:35: unterminated string"]),
        (format!("{h}flags:SX; sid:1;)"), vec!["rules.rules:1:37: unknown TCP flag 'X' in 'SX' (use F S R P A U C E, 0)"]),
        (format!("{h}dsize:>abc; sid:1;)"), vec!["rules.rules:1:37: 'dsize': expected a number, got 'abc'"]),
        (format!("{h}offset:x; sid:1;)"), vec!["rules.rules:1:31: 'offset' must follow a 'content'"]),
        (format!("{h}content:\"a\"; offset:x; sid:1;)"), vec!["rules.rules:1:51: 'offset' must be an integer in 0..=65535, got 'x'"]),
        (
            "alert udp any any -> any any (itype:3; flags:S; sid:1;)".to_string(),
            vec![
                "rules.rules:1:40: 'flags' needs a tcp, http, tls or ip rule",
                "rules.rules:1:31: 'itype' needs an icmp, icmpv4, icmpv6 or ip rule",
            ],
        ),
        (
            "reject tcp any any -> any any (sid:1;)".to_string(),
            vec!["rules.rules:1:1: unsupported action 'reject' (supported: alert, drop, pass)"],
        ),
        (
            "alert smb any any -> any any (sid:1;)".to_string(),
            vec!["rules.rules:1:7: unsupported protocol 'smb' (supported: ip, tcp, udp, icmp, icmpv4, icmpv6, http, dns, tls)"],
        ),
        ("alert tcp any any => any any (sid:1;)".to_string(), vec!["rules.rules:1:19: unsupported direction '=>' (supported: ->, <>)"]),
        ("alert tcp any any -> $NOPE any (sid:1;)".to_string(), vec!["rules.rules:1:22: undefined variable $NOPE"]),
        ("alert tcp 1.2.3.4/40 any -> any any (sid:1;)".to_string(), vec!["rules.rules:1:11: invalid prefix length in '1.2.3.4/40' (0..=32)"]),
        ("alert tcp any [80,x] -> any any (sid:1;)".to_string(), vec!["rules.rules:1:19: invalid port 'x'"]),
        ("alert icmp any 80 -> any any (sid:1;)".to_string(), vec!["rules.rules:1:16: ports can only be given for tcp, udp and ip rules; use 'any'"]),
        ("alert tcp any any -> any (sid:1;)".to_string(), vec!["rules.rules:1:25: rule header needs 7 fields (action proto src sport -> dst dport), found 6"]),
        ("alert tcp any any -> any any sid:1;".to_string(), vec!["rules.rules:1:1: rule has no option list: expected '(' after the header"]),
        ("alert tcp any any -> any any (sid:1;".to_string(), vec!["rules.rules:1:36: rule must end with ')'"]),
    ];
    for (text, want) in cases {
        if want.is_empty() {
            assert!(
                RuleSet::parse(&text, "rules.rules", &vars()).is_ok(),
                "{text}"
            );
            continue;
        }
        assert_eq!(errors_of(&text), want, "{text}");
    }
}

#[test]
fn errors_carry_keyword_and_all_errors_of_all_rules_are_collected() {
    let text = "alert tcp any any -> any any (lua:\"/x/\"; flowbits:isset,a; sid:1;)\n\
                # fine\n\
                drop udp any any -> any 53 (sid:2;)\n\
                alert tcp any any -> any any (sid:2;)\n\
                alert tcp any any -> any any (content:\"a\"; xbits:isset,b,track ip_src; sid:3;)\n";
    let err = RuleSet::parse(text, "x.rules", &vars()).unwrap_err();
    let got: Vec<_> = err
        .0
        .iter()
        .map(|e| (e.line, e.column, e.keyword.as_deref(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 31, Some("lua"), "unsupported keyword 'lua'"),
            (1, 42, Some("flowbits"), "unsupported keyword 'flowbits'"),
            (
                4,
                1,
                Some("sid"),
                "duplicate sid 2 (first used at x.rules:3)"
            ),
            (5, 44, Some("xbits"), "unsupported keyword 'xbits'"),
        ]
    );
    assert!(err
        .to_string()
        .starts_with("x.rules:1:31: unsupported keyword 'lua'\n"));
}

#[test]
fn sids_must_be_unique_across_files() {
    let dir = std::env::temp_dir().join(format!("scrubd-sig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.rules");
    let b = dir.join("b.rules");
    std::fs::write(&a, "alert udp any any -> any any (sid:7;)\n").unwrap();
    std::fs::write(&b, "\nalert tcp any any -> any any (sid:7;)\n").unwrap();
    let mut cfg = SignatureConfig {
        rule_files: vec![a.clone(), b.clone()],
        vars: vars(),
        strict: true,
    };
    let err = cfg.compile().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2:1: duplicate sid 7 (first used at {}:1)",
            b.display(),
            a.display()
        )
    );
    // Outside strict mode the second rule is skipped and reported, the first one loads.
    cfg.strict = false;
    let lenient = cfg.compile().unwrap();
    let report = lenient.load_report();
    assert_eq!(
        (lenient.len(), report.loaded, report.failures.len()),
        (1, 1, 1)
    );
    assert_eq!(report.by_keyword(), vec![("sid".to_string(), 1)]);
    let missing = SignatureConfig {
        rule_files: vec![dir.join("nope.rules")],
        vars: Vars::new(),
        strict: false,
    };
    assert!(matches!(missing.compile(), Err(SignatureError::Io { .. })));
    let single = RuleSet::load(&a, &vars()).unwrap();
    assert_eq!(single.rules()[0].sid, 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Suricata's normal run: an unsupported rule is skipped with file:line:col, keyword and
/// reason and counted by keyword; `strict` refuses the set; a file that is not a rules file at
/// all is still an error.
#[test]
fn unsupported_rules_are_skipped_and_counted_unless_strict() {
    let dir = std::env::temp_dir().join(format!("scrubd-sig-skip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.rules");
    let junk = dir.join("junk.rules");
    let only_unsupported = dir.join("lua.rules");
    std::fs::write(
        &good,
        "alert udp any any -> any 53 (msg:\"a\"; content:\"x\"; sid:1;)\n\
         alert udp any any -> any 53 (msg:\"b\"; lua:foo.lua; sid:2;)\n\
         alert smb any any -> any any (msg:\"c\"; lua:bar.lua; sid:3;)\n\
         alert udp any any -> any 53 (msg:\"d\"; content:\"x\"; depth:0; sid:4;)\n",
    )
    .unwrap();
    std::fs::write(&junk, "this is not a rules file\nnor is this (\n").unwrap();
    std::fs::write(
        &only_unsupported,
        "alert udp any any -> any 53 (msg:\"e\"; lua:x.lua; sid:5;)\n",
    )
    .unwrap();
    let mut cfg = SignatureConfig {
        rule_files: vec![good.clone(), only_unsupported.clone()],
        vars: vars(),
        strict: false,
    };
    let rules = cfg.compile().unwrap();
    let r = rules.load_report();
    assert_eq!(
        (rules.len(), r.loaded, r.failures.len(), r.errors()),
        (1, 1, 4, 1)
    );
    assert_eq!(
        r.by_keyword(),
        vec![
            ("lua".to_string(), 3),
            ("depth".to_string(), 1),
            ("smb".to_string(), 1)
        ]
    );
    let text = r.render(2);
    assert!(
        text.starts_with(
            "signature rules: 1 loaded, 4 skipped (3 unsupported, 1 malformed)\n\
             skipped by keyword: lua=3 depth=1 smb=1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "skipped {}:2:39: unsupported keyword 'lua'\n",
            good.display()
        )),
        "{text}"
    );
    assert!(text.ends_with("... and 2 more skipped rules\n"), "{text}");
    assert_eq!(
        r.files
            .iter()
            .map(|f| (f.loaded, f.skipped))
            .collect::<Vec<_>>(),
        vec![(1, 3), (0, 1)]
    );

    cfg.strict = true;
    let err = cfg.compile().unwrap_err().to_string();
    assert!(err.contains(":2:39: unsupported keyword 'lua'"), "{err}");
    assert_eq!(err.lines().count(), 5, "{err}");

    cfg.strict = false;
    cfg.rule_files.push(junk.clone());
    let err = cfg.compile().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:1:1: rule has no option list", junk.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_from_toml_and_validation() {
    let cfg: SignatureConfig = toml::from_str(
        r#"
        rule_files = ["/etc/scrubd/ddos.rules"]
        [vars]
        PROTECTED = "192.0.2.0/24"
        HOME_NET = ["10.0.0.0/8", "2001:db8::/32"]
        "#,
    )
    .unwrap();
    assert_eq!(
        cfg.rule_files,
        vec![PathBuf::from("/etc/scrubd/ddos.rules")]
    );
    assert_eq!(
        cfg.vars.get("PROTECTED"),
        Some(&VarValue::One("192.0.2.0/24".into()))
    );
    assert!(cfg.validate().is_ok());
    assert!(!cfg.strict);
    assert!(toml::from_str::<SignatureConfig>("rules = []").is_err());
    let strict: SignatureConfig = toml::from_str("rule_files = []\nstrict = true").unwrap();
    assert!(strict.strict);
    let mut bad = cfg.clone();
    bad.vars
        .insert("$X".into(), VarValue::One("1.2.3.4".into()));
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "signature.vars.$X: variable names use letters, digits and '_' only, without the '$'"
    );
    let mut empty = cfg;
    empty.vars.insert("E".into(), VarValue::Many(vec![]));
    assert_eq!(
        empty.validate().unwrap_err().to_string(),
        "signature.vars.E: empty list"
    );
}

proptest! {
    #[test]
    fn parser_never_panics(text in "[ -~\\n]{0,200}") {
        let _ = RuleSet::parse(&text, "fuzz", &vars());
    }

    #[test]
    fn parser_never_panics_on_rule_shaped_text(
        opts in proptest::collection::vec("(content|offset|depth|distance|within|nocase|flags|dsize|itype|sid|msg|ttl)(:[ -~]{0,8})?", 0..6)
    ) {
        let text = format!("drop tcp any any -> any any ({};)", opts.join(";"));
        let _ = RuleSet::parse(&text, "fuzz", &vars());
    }
}

// ---------------------------------------------------------------- content semantics

/// Whether a single `alert udp` rule with these options matches `payload`.
fn matches(opts: &str, payload: &[u8]) -> bool {
    let mut st = stage(&format!("alert udp any any -> any any ({opts} sid:1;)"));
    assert_eq!(run(&mut st, &udp_payload(payload)), StageResult::Continue);
    st.counters()[0] == 1
}

#[test]
fn content_modifiers_follow_snort_semantics() {
    let cases: &[(&str, &[u8], bool)] = &[
        (r#"content:"abc";"#, b"xxabcxx", true),
        (r#"content:"abc";"#, b"xxabxcx", false),
        (r#"content:"ABC";"#, b"xxabcxx", false),
        (r#"content:"ABC"; nocase;"#, b"xxabcxx", true),
        (r#"content:"|00 01|AB|ff|";"#, b"\x00\x01AB\xff", true),
        (r#"content:"|00 01|AB|ff|";"#, b"\x00\x01AB\xfe", false),
        (r#"content:"a|3b|b";"#, b"a;b", true),
        (r#"content:"a\;b";"#, b"a;b", true),
        (r#"content:"q\"q";"#, b"q\"q", true),
        (r#"content:"abc"; offset:2;"#, b"xxabc", true),
        (r#"content:"abc"; offset:3;"#, b"xxabc", false),
        (r#"content:"abc"; depth:5;"#, b"xxabcx", true),
        (r#"content:"abc"; depth:4;"#, b"xxabcx", false),
        (r#"content:"abc"; offset:2; depth:3;"#, b"xxabcx", true),
        (r#"content:"abc"; offset:1; depth:3;"#, b"xxabcx", false),
        (r#"content:"ab"; content:"cd"; distance:0;"#, b"abcd", true),
        (r#"content:"ab"; content:"cd"; distance:1;"#, b"abcd", false),
        (r#"content:"ab"; content:"cd"; distance:1;"#, b"abxcd", true),
        (r#"content:"ab"; content:"cd"; within:2;"#, b"abcd", true),
        (r#"content:"ab"; content:"cd"; within:2;"#, b"abxcd", false),
        (
            r#"content:"ab"; content:"cd"; distance:1; within:2;"#,
            b"abxcd",
            true,
        ),
        (
            r#"content:"ab"; content:"cd"; distance:1; within:2;"#,
            b"abxxcd",
            false,
        ),
        // A relative content before the previous match, via negative distance.
        (
            r#"content:"cd"; content:"bc"; distance:-3; within:2;"#,
            b"abcd",
            true,
        ),
        // Backtracking: the first "ab" is not followed closely by "cd", the second is.
        (
            r#"content:"ab"; content:"cd"; within:2;"#,
            b"ab__abcd",
            true,
        ),
        // Without relative modifiers, contents are independent of each other's order.
        (r#"content:"cd"; content:"ab";"#, b"abcd", true),
        (r#"content:"ab"; content:!"zz";"#, b"abcd", true),
        (r#"content:"ab"; content:!"cd";"#, b"abcd", false),
        (r#"content:"ab"; content:!"cd"; distance:1;"#, b"abcd", true),
        (r#"content:"ab"; content:!"cd"; within:2;"#, b"abxcd", true),
        (r#"content:!"evil";"#, b"good", true),
        (r#"content:!"evil";"#, b"so evil", false),
        (r#"content:!"EVIL"; nocase;"#, b"so evil", false),
        (
            r#"content:"abc"; nocase; content:"D"; distance:0; within:1;"#,
            b"ABCD",
            true,
        ),
        (
            r#"content:"abc"; nocase; content:"D"; distance:0; within:1;"#,
            b"ABCd",
            false,
        ),
        (r#"dsize:5;"#, b"12345", true),
        (r#"dsize:>5;"#, b"12345", false),
        (r#"dsize:3<>6; content:"1";"#, b"12345", true),
        (r#"dsize:!5;"#, b"12345", false),
    ];
    for (opts, payload, want) in cases {
        assert_eq!(
            matches(opts, payload),
            *want,
            "{opts} on {:?}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn fast_pattern_choice_does_not_change_results() {
    // The short content is the rarer one here; with fast_pattern it becomes the prefilter key,
    // without it the longer one does. Both must verify identically.
    for fp in ["", " fast_pattern;"] {
        assert!(matches(
            &format!(r#"content:"x";{fp} content:"common";"#),
            b"common x"
        ));
        assert!(!matches(
            &format!(r#"content:"x";{fp} content:"common";"#),
            b"common"
        ));
    }
}

#[derive(Clone, Debug)]
struct GenContent {
    bytes: Vec<u8>,
    negated: bool,
    nocase: bool,
    /// 0: none, 1: absolute, 2: relative (only when a positive content precedes)
    kind: u8,
    a: i32,
    b: Option<u16>,
    fast: bool,
}

fn gen_content() -> impl Strategy<Value = GenContent> {
    (
        proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'b'), Just(b'A'), Just(b';')],
            1..4,
        ),
        prop::bool::weighted(0.2),
        any::<bool>(),
        0u8..3,
        -3i32..5,
        proptest::option::of(0u16..5),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(bytes, negated, nocase, kind, a, b, fast)| GenContent {
            bytes,
            negated,
            nocase,
            kind,
            a,
            b,
            fast,
        })
}

/// Renders contents as rule options, normalising combinations the parser rightly rejects.
fn render(cs: &mut [GenContent]) -> String {
    let mut out = String::new();
    let mut positive_before = false;
    for (i, c) in cs.iter_mut().enumerate() {
        if c.kind == 2 && !positive_before {
            c.kind = 1;
        }
        if c.negated {
            c.fast = false;
        }
        if c.kind == 1 && c.a < 0 {
            c.a = -c.a;
        }
        let hex: Vec<String> = c.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let body = if i % 2 == 0 {
            format!("|{}|", hex.join(" "))
        } else {
            String::from_utf8(c.bytes.clone())
                .unwrap()
                .replace(';', "\\;")
        };
        out += &format!("content:{}\"{body}\";", if c.negated { "!" } else { "" });
        if c.nocase {
            out += " nocase;";
        }
        if c.fast {
            out += " fast_pattern;";
        }
        let len = c.bytes.len() as u16;
        match c.kind {
            1 => {
                out += &format!(" offset:{};", c.a);
                if let Some(b) = c.b {
                    out += &format!(" depth:{};", len + b);
                }
            }
            2 => {
                out += &format!(" distance:{};", c.a);
                if let Some(b) = c.b {
                    out += &format!(" within:{};", len + b);
                }
            }
            _ => {}
        }
        out.push(' ');
        positive_before |= !c.negated;
    }
    out
}

/// Brute force: try every placement of every positive content.
fn oracle(cs: &[GenContent], payload: &[u8], i: usize, prev_end: i64) -> bool {
    let Some(c) = cs.get(i) else { return true };
    let len = c.bytes.len();
    let fits = |p: usize| -> bool {
        let Some(w) = payload.get(p..p + len) else {
            return false;
        };
        let eq = if c.nocase {
            w.eq_ignore_ascii_case(&c.bytes)
        } else {
            w == c.bytes.as_slice()
        };
        let (p, end) = (p as i64, (p + len) as i64);
        let pos_ok = match c.kind {
            1 => {
                p >= i64::from(c.a)
                    && c.b
                        .is_none_or(|d| end <= i64::from(c.a) + len as i64 + i64::from(d))
            }
            2 => {
                p >= prev_end + i64::from(c.a)
                    && c.b.is_none_or(|w| {
                        end <= prev_end + i64::from(c.a) + len as i64 + i64::from(w)
                    })
            }
            _ => true,
        };
        eq && pos_ok
    };
    if c.negated {
        return !(0..payload.len()).any(fits) && oracle(cs, payload, i + 1, prev_end);
    }
    (0..payload.len()).any(|p| fits(p) && oracle(cs, payload, i + 1, (p + len) as i64))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn automaton_plus_verification_equals_brute_force(
        rules in proptest::collection::vec(proptest::collection::vec(gen_content(), 1..4), 1..6),
        payload in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'A'), Just(b'B'), Just(b';')], 0..20),
    ) {
        let mut rules = rules;
        let text: String = rules
            .iter_mut()
            .enumerate()
            .map(|(i, cs)| format!("alert udp any any -> any any ({} sid:{};)\n", render(cs), i + 1))
            .collect();
        let mut st = stage(&text);
        prop_assert_eq!(run(&mut st, &udp_payload(&payload)), StageResult::Continue);
        let want: Vec<u64> = rules.iter().map(|cs| u64::from(oracle(cs, &payload, 0, 0))).collect();
        prop_assert_eq!(st.counters(), want.as_slice(), "rules:\n{}", text);
    }
}

// ---------------------------------------------------------------- actions and headers

#[test]
fn action_precedence_is_pass_then_drop_then_alert() {
    let text = r#"
alert udp any any -> any any (content:"a"; sid:1;)
drop udp any any -> any any (content:"b"; sid:2;)
drop udp any any -> any any (content:"c"; sid:3;)
pass udp any any -> any any (content:"z"; sid:4;)
"#;
    let mut st = stage(text);
    assert_eq!(run(&mut st, &udp_payload(b"a")), StageResult::Continue);
    assert_eq!(st.counters(), &[1, 0, 0, 0]);
    assert_eq!(
        run(&mut st, &udp_payload(b"cba")),
        StageResult::Done(Verdict::Drop(DropReason::Signature(1)))
    );
    assert_eq!(st.counters(), &[2, 1, 1, 0]);
    assert_eq!(
        run(&mut st, &udp_payload(b"c")),
        StageResult::Done(Verdict::Drop(DropReason::Signature(2)))
    );
    assert_eq!(
        run(&mut st, &udp_payload(b"abcz")),
        StageResult::Done(Verdict::Forward)
    );
    assert_eq!(st.counters(), &[2, 1, 2, 1]);
    assert_eq!(run(&mut st, &udp_payload(b"q")), StageResult::Continue);
    assert_eq!(st.counters(), &[2, 1, 2, 1]);
    let info = st.rules_info();
    assert_eq!(
        (info[3].sid, info[3].action, info[3].location.line),
        (4, Action::Pass, 5)
    );
}

#[test]
fn header_only_rules_match_on_header_fields() {
    let text = r#"
drop udp any any -> $PROTECTED 11211 (msg:"memcached"; sid:1;)
drop tcp any any -> $PROTECTED [80,443] (flags:S,CE; dsize:>0; sid:2;)
alert tcp any any -> any 1024: (flags:+R; sid:3;)
drop icmp any any -> any any (itype:8; dsize:>1000; sid:4;)
alert ip any any -> any any (ip_proto:47; sid:5;)
alert udp 203.0.113.0/24 53 <> $HOME_NET any (sid:6;)
alert udp any any -> any any (content:!"ok"; dsize:<4; sid:7;)
drop icmpv6 any any -> any any (itype:128; sid:8;)
alert tcp any any -> any any (ttl:<2; sid:9;)
"#;
    let mut st = stage(text);
    let p = |src: &str, dst: &str, t: Transport, pl: &[u8]| packet(src, dst, t, pl);
    let drop = |i| StageResult::Done(Verdict::Drop(DropReason::Signature(i)));
    type Case = ((Vec<u8>, Headers), StageResult, Option<usize>);
    let cases: Vec<Case> = vec![
        (
            p("198.51.100.1", "192.0.2.5", udp(123, 11211), b"stats"),
            drop(0),
            Some(0),
        ),
        (
            p("198.51.100.1", "192.0.3.5", udp(123, 11211), b"stats"),
            StageResult::Continue,
            None,
        ),
        (
            p("198.51.100.1", "192.0.2.5", udp(123, 11212), b"stats"),
            StageResult::Continue,
            None,
        ),
        (
            p(
                "198.51.100.1",
                "192.0.2.5",
                tcp(5, 443, TcpInfo::SYN | TcpInfo::ECE),
                b"x",
            ),
            drop(1),
            Some(1),
        ),
        (
            p(
                "198.51.100.1",
                "192.0.2.5",
                tcp(5, 443, TcpInfo::SYN | TcpInfo::ACK),
                b"x",
            ),
            StageResult::Continue,
            None,
        ),
        (
            p("198.51.100.1", "192.0.2.5", tcp(5, 443, TcpInfo::SYN), b""),
            StageResult::Continue,
            None,
        ),
        (
            p(
                "198.51.100.1",
                "192.0.2.5",
                tcp(5, 8080, TcpInfo::RST | TcpInfo::ACK),
                b"",
            ),
            StageResult::Continue,
            Some(2),
        ),
        (
            p("198.51.100.1", "192.0.2.5", tcp(5, 80, TcpInfo::RST), b""),
            StageResult::Continue,
            None,
        ),
        (
            p(
                "198.51.100.1",
                "192.0.2.5",
                Transport::Icmp { ty: 8, code: 0 },
                &[0; 1200],
            ),
            drop(3),
            Some(3),
        ),
        (
            p(
                "198.51.100.1",
                "192.0.2.5",
                Transport::Icmp { ty: 0, code: 0 },
                &[0; 1200],
            ),
            StageResult::Continue,
            None,
        ),
        // `icmp` covers ICMPv6 too, but itype 8 is not an ICMPv6 echo request; the icmpv6 rule is.
        (
            p(
                "2001:db8::1",
                "2001:db8::2",
                Transport::Icmpv6 { ty: 128, code: 0 },
                &[0; 1200],
            ),
            drop(7),
            Some(7),
        ),
        (
            p("198.51.100.1", "192.0.2.5", Transport::Other, b"gre"),
            StageResult::Continue,
            Some(4),
        ),
        (
            p("203.0.113.9", "10.1.1.1", udp(53, 999), b"answer"),
            StageResult::Continue,
            Some(5),
        ),
        (
            p("10.1.1.1", "203.0.113.9", udp(999, 53), b"query"),
            StageResult::Continue,
            Some(5),
        ),
        (
            p("10.1.1.1", "203.0.113.9", udp(53, 999), b"query"),
            StageResult::Continue,
            None,
        ),
        (
            p("1.1.1.1", "2.2.2.2", udp(1, 2), b"abc"),
            StageResult::Continue,
            Some(6),
        ),
        (
            p("1.1.1.1", "2.2.2.2", udp(1, 2), b"ok"),
            StageResult::Continue,
            None,
        ),
    ];
    for (i, (pk, want, hit)) in cases.iter().enumerate() {
        let before = st.counters().to_vec();
        assert_eq!(&run(&mut st, pk), want, "case {i}");
        let changed: Vec<usize> = (0..before.len())
            .filter(|&r| st.counters()[r] != before[r])
            .collect();
        assert_eq!(changed, hit.iter().copied().collect::<Vec<_>>(), "case {i}");
    }
    // TTL is read from the IP header.
    let (frame, mut hdr) = p("1.1.1.1", "2.2.2.2", tcp(1, 2, TcpInfo::ACK), b"");
    if let Net::Ip(ip) = &mut hdr.net {
        ip.ttl = 1;
    }
    let before = st.counters()[8];
    assert_eq!(
        st.process(&frame, &hdr, &Meta::default()),
        StageResult::Continue
    );
    assert_eq!(st.counters()[8], before + 1);
}

#[test]
fn out_of_range_payload_offsets_and_non_ip_frames_are_safe() {
    let mut st = stage(
        "drop udp any any -> any any (content:\"abc\"; sid:1;)\ndrop udp any any -> any any (dsize:0; sid:2;)",
    );
    let (frame, mut hdr) = udp_payload(b"abc");
    if let Net::Ip(ip) = &mut hdr.net {
        ip.payload_off = 60000;
    }
    assert_eq!(
        st.process(&frame, &hdr, &Meta::default()),
        StageResult::Done(Verdict::Drop(DropReason::Signature(1)))
    );
    if let Net::Ip(ip) = &mut hdr.net {
        ip.payload_off = PAYLOAD_OFF as u16;
        ip.payload_len = 60000;
    }
    // Clipped to the frame: the payload is still "abc".
    assert_eq!(
        st.process(&frame, &hdr, &Meta::default()),
        StageResult::Done(Verdict::Drop(DropReason::Signature(0)))
    );
    hdr.net = Net::Arp;
    assert_eq!(
        st.process(&frame, &hdr, &Meta::default()),
        StageResult::Continue
    );
}

#[test]
fn many_rules_sharing_a_fast_pattern_and_generation_wraparound() {
    let text: String = (1..=50)
        .map(|i| format!("alert udp any any -> any any (content:\"GET\"; nocase; content:\"/{i}/\"; sid:{i};)\n"))
        .collect();
    let rules = CompiledRules::from_text(&text, "t", &vars()).unwrap();
    // "GET" is shared by all 50 rules and "/i/" by one each: the rarer one is each rule's
    // fast pattern, so the automaton holds 50 patterns and a packet with "GET" alone wakes
    // no rule.
    assert_eq!(rules.pattern_count(), 50);
    let mut st = SignatureStage::new(Arc::new(rules));
    for _ in 0..3 {
        run(&mut st, &udp_payload(b"get /7/ get /7/ /8/"));
    }
    assert_eq!(st.counters()[6], 3);
    assert_eq!(st.counters()[7], 3);
    assert_eq!(st.counters().iter().sum::<u64>(), 6);
}

// ---------------------------------------------------------------- suricata-verify rules

#[test]
fn suricata_verify_rules_parse_or_fail_with_clear_errors() {
    let Ok(root) = crate::testutil::pcaps_dir().map(|p| p.join("suricata-verify")) else {
        println!("skipped: no shared/pcaps found (set SCRUBD_PCAPS)");
        return;
    };
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!("skipped: {} is not readable", root.display());
        return;
    };
    let proto = "(supported: ip, tcp, udp, icmp, icmpv4, icmpv6, http, dns, tls)";
    let action = "(supported: alert, drop, pass)";
    let known: Vec<(&str, Vec<String>)> = vec![(
        "tcp-session-syn-flood-drop-precedence/firewall.rules",
        vec![
            format!("2:1: unsupported action 'drop:flow' {action}"),
            format!("2:11: unsupported protocol 'tcp:flow_start' {proto}"),
            "2:111: unsupported keyword 'alert'".into(),
            format!("3:1: unsupported action 'accept:hook' {action}"),
            format!("3:13: unsupported protocol 'tcp:flow_start' {proto}"),
            "3:48: unsupported keyword 'tcp.session'".into(),
        ],
    )];
    let mut checked = 0;
    let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        for name in ["test.rules", "firewall.rules"] {
            let path = dir.join(name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let rel = format!("{}/{name}", dir.file_name().unwrap().to_string_lossy());
            let result = RuleSet::parse(&text, &rel, &Vars::new());
            println!(
                "{rel}: {}",
                match &result {
                    Ok(s) => format!("{} rules ok", s.len()),
                    Err(e) => format!("\n{e}"),
                }
            );
            let got: Vec<String> = match &result {
                Ok(_) => Vec::new(),
                Err(e) => {
                    e.0.iter()
                        .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                        .collect()
                }
            };
            if let Some((_, want)) = known.iter().find(|(k, _)| *k == rel) {
                assert_eq!(&got, want, "{rel}");
            } else if let Err(e) = &result {
                // Files this test does not know: every error must still name what it is about.
                for err in &e.0 {
                    assert!(err.line > 0 && err.column > 0, "{err}");
                    assert!(
                        err.keyword.is_some() || err.message.contains("rule"),
                        "{err}"
                    );
                }
            }
            checked += 1;
        }
    }
    println!(
        "checked {checked} suricata-verify rules files under {}",
        root.display()
    );
}

// ---------------------------------------------------------------- measurements (release, ignored)

/// 10k rules shaped like an operator's DDoS set: URL/UA content rules, reflection/amplification
/// header rules by port, flag and size rules.
fn generated_rules(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let sid = i + 1;
        let line = match i % 10 {
            0..=5 => format!(
                "drop tcp any any -> $HOME_NET $HTTP_PORTS (msg:\"bad url {i}\"; flags:+A; content:\"GET \"; depth:4; content:\"/api/v{}/item{i}?q=\"; nocase; distance:0; content:\"User-Agent|3a| bot-{i}\"; distance:0; classtype:attempted-dos; sid:{sid}; rev:2;)",
                i % 7
            ),
            6 | 7 => format!(
                "drop udp any {} -> $PROTECTED any (msg:\"reflection {i}\"; dsize:>{}; sid:{sid};)",
                1 + i % 1000,
                100 + i % 400
            ),
            8 => format!(
                "alert tcp [198.51.100.0/24,!198.51.100.{}] any -> $PROTECTED {} (flags:S,CE; dsize:>0; sid:{sid};)",
                i % 256,
                1 + i % 60000
            ),
            _ => format!(
                "alert udp any any -> $PROTECTED {} (content:\"|00 01 00 00 00 01|\"; offset:2; depth:6; content:\"evil{i}\"; nocase; sid:{sid};)",
                53 + i % 2
            ),
        };
        s += &line;
        s.push('\n');
    }
    s
}

fn mixed_vars() -> Vars {
    let mut v = vars();
    v.insert(
        "HOME_NET".into(),
        VarValue::One("[10.0.0.0/8,192.0.2.0/24]".into()),
    );
    v
}

#[test]
fn ten_thousand_rules_load() {
    let text = generated_rules(10_000);
    let t = std::time::Instant::now();
    let set = RuleSet::parse(&text, "gen.rules", &mixed_vars()).unwrap();
    let parsed = t.elapsed();
    let compiled = set.compile().unwrap();
    let total = t.elapsed();
    assert_eq!(compiled.len(), 10_000);
    assert_eq!(compiled.rules_info()[9_999].sid, 10_000);
    println!(
        "10k rules: parse {:?}, parse+compile {:?}, {} fast patterns",
        parsed,
        total,
        compiled.pattern_count()
    );
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn measure_matching_speed() {
    let http = b"GET /api/v3/item424242?q=shoes HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef0123456789abcdef\r\n\r\n";
    let pkt = packet(
        "198.51.100.1",
        "10.0.0.5",
        tcp(40000, 80, TcpInfo::ACK | TcpInfo::PSH),
        http,
    );
    for n in [1usize, 100, 10_000] {
        let text: String = (0..n)
            .map(|i| format!("drop tcp any any -> $HOME_NET 80 (content:\"GET \"; depth:4; content:\"/api/v{}/item{i}?q=\"; nocase; distance:0; sid:{};)\n", i % 7, i + 1))
            .collect();
        let rules = CompiledRules::from_text(&text, "gen", &mixed_vars()).unwrap();
        let mut st = SignatureStage::new(Arc::new(rules));
        let iters = 200_000u32;
        let t = std::time::Instant::now();
        let mut drops = 0u32;
        for _ in 0..iters {
            if run(&mut st, std::hint::black_box(&pkt)) != StageResult::Continue {
                drops += 1;
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
        println!(
            "{n:>6} content rules: {ns:8.1} ns/packet ({} bytes payload, {drops} drops)",
            http.len()
        );
    }
    let full = CompiledRules::from_text(&generated_rules(10_000), "gen", &mixed_vars()).unwrap();
    let mut st = SignatureStage::new(Arc::new(full));
    let iters = 200_000u32;
    let t = std::time::Instant::now();
    for _ in 0..iters {
        run(&mut st, std::hint::black_box(&pkt));
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("10k mixed rules: {ns:8.1} ns/packet");
}

// ---------------------------------------------------------------- ET Open (../shared/rules)

/// Suricata's default variables for ET Open.
pub(crate) fn et_vars() -> Vars {
    suricata_default_vars()
}

/// The ET Open rule files, sorted, when the shared set is present beside the repository.
pub(crate) fn et_files() -> Option<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/rules/et-open");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    v.sort();
    Some(v)
}

/// Prints the load table by keyword over all of ET Open and the load time.
#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn et_open_load_report() {
    let Some(files) = et_files() else {
        println!("../shared/rules/et-open absent");
        return;
    };
    let cfg = SignatureConfig {
        rule_files: files,
        vars: et_vars(),
        strict: false,
    };
    let t = std::time::Instant::now();
    let rules = match cfg.compile() {
        Ok(r) => r,
        Err(SignatureError::Rules(e)) => {
            let bad: Vec<_> = e.0.iter().filter(|e| !e.unsupported).take(10).collect();
            panic!("{} errors; malformed: {bad:#?}", e.0.len());
        }
        Err(e) => panic!("{e}"),
    };
    let took = t.elapsed();
    let r = rules.load_report();
    println!("{}", r.summary());
    println!(
        "load + compile: {took:?}, {} fast patterns",
        rules.pattern_count()
    );
    for (k, n) in r.by_keyword().iter().take(40) {
        println!("{n:>6} {k}");
    }
    let dos = r
        .files
        .iter()
        .find(|f| f.file.ends_with("emerging-dos.rules"));
    println!("emerging-dos: {dos:?}");
    // Reasons of malformed (not merely unsupported) skips, most frequent first.
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for f in r.failures.iter().filter(|f| !f.only_unsupported()) {
        for e in f.errors.iter().filter(|e| !e.unsupported) {
            let m: String = e.message.chars().take(70).collect();
            *reasons.entry(m).or_default() += 1;
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (m, n) in reasons.iter().take(15) {
        println!("malformed {n:>5} {m}");
    }
}

/// Valid syntax that used to be read wrongly, each checked on the ET Open rules that exposed
/// it (cut down to the keywords this test is about).
#[test]
fn et_syntax_is_read_as_suricata_reads_it() {
    let v = et_vars();
    // `distance`/`within` on a buffer's first content count from the buffer start (sid 2024234
    // has `content:"|3B|"; distance:0;` after a buffer switch; 171 ET rules do this).
    let text = "alert udp any any -> any any (msg:\"first relative\"; content:\"|3B|\"; distance:1; within:2; sid:1;)";
    let rules = CompiledRules::from_text(text, "et", &v).unwrap();
    let mut st = SignatureStage::new(Arc::new(rules));
    let hit = |st: &mut SignatureStage, p: &[u8]| {
        matches!(run(st, &udp_payload(p)), StageResult::Continue) && st.counters()[0] > 0
    };
    assert!(!hit(&mut st, b";ab"), "window [1,3) excludes offset 0");
    assert!(hit(&mut st, b"a;b"));
    // Ports on ip rules (GPL SHELLCODE, sid 2100640): they match packets with ports only.
    let text = "alert ip $EXTERNAL_NET $SHELLCODE_PORTS -> $HOME_NET any (msg:\"GPL SHELLCODE AIX NOOP\"; content:\"O|FF FB 82|O|FF FB 82|O|FF FB 82|O|FF FB 82|\"; classtype:shellcode-detect; sid:2100640; rev:7;)";
    let set = RuleSet::parse(text, "emerging-shellcode.rules", &v).unwrap();
    assert_eq!(
        set.rules()[0].sport,
        super::expr::parse_expr("!80", &v).unwrap()
    );
    let mut st = SignatureStage::new(Arc::new(set.compile().unwrap()));
    let noop = b"O\xff\xfb\x82O\xff\xfb\x82O\xff\xfb\x82O\xff\xfb\x82";
    let from = |sport| packet("8.8.8.8", "10.1.1.1", tcp(sport, 5555, 0x18), noop);
    run(&mut st, &from(80));
    assert_eq!(st.counters()[0], 0, "source port 80 is excluded");
    run(&mut st, &from(81));
    assert_eq!(st.counters()[0], 1);
    // `\:` in content (ET USER_AGENTS, 7 rules).
    let text = "alert tcp $HOME_NET any -> $EXTERNAL_NET any (msg:\"ET USER_AGENTS Suspicious User-Agent (Loands)\"; content:\"User-Agent\\: Loands|0d 0a|\"; sid:2003;)";
    let set = RuleSet::parse(text, "emerging-user_agents.rules", &v).unwrap();
    assert_eq!(set.rules()[0].contents[0].bytes, b"User-Agent: Loands\r\n");
    // msg is text: `|` is not hex and `\` escapes only `" ; \ : ,` (9 rules).
    for (msg, want) in [
        (
            r"ET ADWARE_PUP User-Agent (C\\WINDOWS\\system32\\NetLogom.exe)",
            r"ET ADWARE_PUP User-Agent (C\WINDOWS\system32\NetLogom.exe)",
        ),
        (
            "ET HUNTING SUSPICIOUS IRC - PRIVMSG *.(exe|tar|tgz|zip)  download command",
            "ET HUNTING SUSPICIOUS IRC - PRIVMSG *.(exe|tar|tgz|zip)  download command",
        ),
        (
            r"ET HUNTING Suspicious User-Agent (c \windows)",
            r"ET HUNTING Suspicious User-Agent (c \windows)",
        ),
        (
            r"ET USER_AGENTS Downloader User-Agent (AutoDL\/1.0)",
            r"ET USER_AGENTS Downloader User-Agent (AutoDL\/1.0)",
        ),
    ] {
        let text = format!("alert tcp any any -> any any (msg:\"{msg}\"; sid:5;)");
        let set = RuleSet::parse(&text, "et", &v).unwrap_or_else(|e| panic!("{msg}: {e}"));
        assert_eq!(set.rules()[0].msg, want);
    }
    // A `"` inside a pcre value (sid 2035009) does not end the value.
    let body =
        r#"msg:"x"; pcre:"/^(%3d|=)(%22|")org(%2e|\.)apache/Rsi"; content:"bean"; sid:2035009;"#;
    let opts = super::lexer::split_options(body, 0).unwrap();
    let kv: Vec<_> = opts
        .iter()
        .map(|o| (o.key.text, o.value.map(|v| v.text)))
        .collect();
    assert_eq!(
        kv,
        vec![
            ("msg", Some("\"x\"")),
            ("pcre", Some(r#""/^(%3d|=)(%22|")org(%2e|\.)apache/Rsi""#)),
            ("content", Some("\"bean\"")),
            ("sid", Some("2035009")),
        ]
    );
}

// ---------------------------------------------------------------- prefilter scan bounds

/// A group whose fast patterns all sit within the payload's first bytes (absolute contents
/// with a depth, `startswith`) scans only those bytes; one unbounded rule in the group makes
/// the whole group scan everything. Matches are the same either way.
#[test]
fn prefilter_scans_only_as_far_as_anchored_patterns_reach() {
    let anchored = "drop udp any any -> any any (content:\"|04 01 07 47|\"; depth:4; sid:1;)\n\
                    drop udp any any -> any any (content:\"ABCD\"; offset:2; depth:8; sid:2;)\n\
                    drop udp any any -> any any (content:\"HELLO\"; startswith; sid:3;)\n";
    let rules = CompiledRules::from_text(anchored, "t", &Vars::new()).unwrap();
    let ends: Vec<Option<usize>> = rules.prefilter.groups.iter().map(|g| g.scan_end).collect();
    assert_eq!(ends, [Some(10)], "widest bound: offset 2 + depth 8");
    let mut st = SignatureStage::new(Arc::new(rules));
    let mut plan = Vec::new();
    let long = udp_payload(&[b'x'; 600]);
    st.scan_plan(&long.0, &long.1, &mut plan);
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].2 - plan[0].1, 10, "10 of 600 payload bytes scanned");
    let drop = |sid_index: u32| StageResult::Done(Verdict::Drop(DropReason::Signature(sid_index)));
    assert_eq!(run(&mut st, &udp_payload(b"\x04\x01\x07\x47rest")), drop(0));
    assert_eq!(run(&mut st, &udp_payload(b"..ABCD")), drop(1));
    assert_eq!(
        run(&mut st, &udp_payload(b"......ABCD")),
        drop(1),
        "ends at 10"
    );
    assert_eq!(
        run(&mut st, &udp_payload(b".......ABCD")),
        StageResult::Continue
    );
    assert_eq!(run(&mut st, &udp_payload(b"HELLO world")), drop(2));
    assert_eq!(
        run(&mut st, &udp_payload(b"x\x04\x01\x07\x47")),
        StageResult::Continue
    );

    let mixed = format!(
        "{anchored}drop udp any any -> any any (content:\"anywhere\"; sid:4;)\n\
         drop udp any any -> any any (content:\"ABCD\"; distance:0; sid:5;)\n"
    );
    let rules = CompiledRules::from_text(&mixed, "t", &Vars::new()).unwrap();
    let ends: Vec<Option<usize>> = rules.prefilter.groups.iter().map(|g| g.scan_end).collect();
    assert_eq!(
        ends,
        [None],
        "unbounded rules make the group scan everything"
    );
    let mut st = SignatureStage::new(Arc::new(rules));
    let mut far = vec![b'.'; 500];
    far.extend_from_slice(b"anywhere");
    assert_eq!(run(&mut st, &udp_payload(&far)), drop(3));
    // "ABCD" is both rule 1's (depth-bounded) and rule 4's (unbounded) fast pattern: the
    // pattern is unbounded, and a far occurrence still reaches rule 4.
    let mut far = vec![b'.'; 500];
    far.extend_from_slice(b"ABCD");
    assert_eq!(run(&mut st, &udp_payload(&far)), drop(4));
}
