//! Rule text → [`Rule`] values. Every problem becomes a [`RuleError`] with file, line, column and
//! keyword, and parsing carries on so one run reports all of a file's problems at once.

use std::sync::Arc;

use super::expr::{parse_expr, Expr, PortRange, Vars};
use super::keywords::{self, BufSel, Buffer, Check, CheckKind, Flow, KwError, Threshold};
use super::lexer::{header_tokens, logical_lines, split_options, LogicalLine, Span};
use crate::prefix::Prefix;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Stop inspecting and forward (bypass); wins over everything.
    Pass,
    /// Drop the packet; wins over alert.
    Drop,
    /// Count only.
    Alert,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Drop => "drop",
            Action::Alert => "alert",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// Any IP packet.
    Ip,
    Tcp,
    Udp,
    /// ICMP for IPv4 and ICMPv6, as in Suricata.
    Icmp,
    Icmpv4,
    Icmpv6,
    /// Application-layer protocols, recognised per packet: TCP carrying an HTTP request head
    /// or response line, UDP/TCP carrying a DNS message, TCP carrying a TLS record.
    Http,
    Dns,
    Tls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `->`: source fields match the packet's source.
    Forward,
    /// `<>`: either orientation matches.
    Both,
}

/// One `content` with its modifiers. Positions follow Snort/Suricata: `offset`/`depth` are
/// absolute from the payload start (the window is `[offset, offset+depth)`); `distance`/`within`
/// are relative to the end of the previous non-negated content match (the window is
/// `[prev_end+distance, prev_end+distance+within)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub bytes: Vec<u8>,
    pub negated: bool,
    pub nocase: bool,
    pub offset: Option<u16>,
    pub depth: Option<u16>,
    pub distance: Option<i32>,
    pub within: Option<u16>,
    pub fast_pattern: bool,
    /// `fast_pattern:offset,length`: the prefilter uses only this slice of the content.
    pub fast_pattern_chop: Option<(u16, u16)>,
    /// `startswith`: the match starts at the buffer start.
    pub startswith: bool,
    /// `endswith`: the match ends at the buffer end.
    pub endswith: bool,
    /// The sticky buffer (and transform) in force where the content was written.
    pub buf: BufSel,
}

impl Content {
    pub fn new(bytes: &[u8]) -> Self {
        Content {
            bytes: bytes.to_vec(),
            negated: false,
            nocase: false,
            offset: None,
            depth: None,
            distance: None,
            within: None,
            fast_pattern: false,
            fast_pattern_chop: None,
            startswith: false,
            endswith: false,
            buf: BufSel::PAYLOAD,
        }
    }

    pub fn is_relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }
}

/// How `flags` compares the packet's TCP flags (after clearing the ignored bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsMode {
    /// No modifier: exactly these flags.
    Exact,
    /// `+`: all of these, others allowed.
    All,
    /// `*`: any of these.
    Any,
    /// `!`: not all of these (Suricata's reading; for one flag, "not set").
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsMatch {
    pub flags: u8,
    /// Bits cleared from the packet's flags before comparing (the part after the comma).
    pub ignore: u8,
    pub mode: FlagsMode,
}

impl FlagsMatch {
    pub fn matches(&self, pkt: u8) -> bool {
        let f = pkt & !self.ignore;
        match self.mode {
            FlagsMode::Exact => f == self.flags,
            FlagsMode::All => f & self.flags == self.flags,
            FlagsMode::Any => f & self.flags != 0,
            FlagsMode::Not => f & self.flags != self.flags,
        }
    }
}

/// An integer test: inclusive `lo..=hi`, optionally negated. `>5` is `6..=MAX`, `3<>8` is `4..=7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumMatch {
    pub lo: u32,
    pub hi: u32,
    pub negated: bool,
}

impl NumMatch {
    pub fn matches(&self, v: u32) -> bool {
        (self.lo <= v && v <= self.hi) != self.negated
    }
}

/// A parsed rule, in the order and with the values the file gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub proto: Proto,
    pub src: Expr<Prefix>,
    pub sport: Expr<PortRange>,
    pub direction: Direction,
    pub dst: Expr<Prefix>,
    pub dport: Expr<PortRange>,
    pub msg: String,
    pub sid: u32,
    pub rev: u32,
    pub contents: Vec<Content>,
    pub flags: Option<FlagsMatch>,
    pub dsize: Option<NumMatch>,
    pub itype: Option<NumMatch>,
    pub icode: Option<NumMatch>,
    pub ip_proto: Option<NumMatch>,
    pub ttl: Option<NumMatch>,
    /// pcre, byte_test, byte_jump, isdataat, bsize: in rule order relative to the contents.
    pub checks: Vec<Check>,
    pub flow: Option<Flow>,
    pub threshold: Option<Threshold>,
    pub location: Location,
}

/// Where a rule was written, for reports and duplicate-sid errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

/// One problem in a rules file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The keyword, action, protocol or variable the problem is about, when there is one.
    pub keyword: Option<String>,
    pub message: String,
    /// The rule is well-formed but uses something this engine cannot evaluate (a keyword,
    /// protocol or keyword argument): outside strict mode such a rule is skipped and counted.
    pub unsupported: bool,
}

/// Every problem found while reading rules, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_errors(.0))]
pub struct RuleErrors(pub Vec<RuleError>);

fn join_errors(v: &[RuleError]) -> String {
    v.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Upper bound on contents per rule; it bounds the matcher's recursion depth.
pub const MAX_CONTENTS: usize = 32;

/// Keywords accepted for compatibility and ignored: they describe a rule, they do not match.
/// `target` names which side is the target for reporting; it does not match either.
pub const IGNORED_KEYWORDS: &[&str] = &[
    "classtype",
    "metadata",
    "reference",
    "priority",
    "gid",
    "target",
];

struct Ctx<'a> {
    file: &'a str,
    line: &'a LogicalLine,
    errors: Vec<RuleError>,
}

impl Ctx<'_> {
    fn err(&mut self, off: usize, keyword: Option<&str>, message: impl Into<String>) {
        self.push(off, keyword, message.into(), false);
    }

    /// A construct this engine does not evaluate (see [`RuleError::unsupported`]).
    fn unsupported(&mut self, off: usize, keyword: &str, message: impl Into<String>) {
        self.push(off, Some(keyword), message.into(), true);
    }

    fn push(&mut self, off: usize, keyword: Option<&str>, message: String, unsupported: bool) {
        let (line, column) = self.line.pos(off);
        self.errors.push(RuleError {
            file: self.file.to_string(),
            line,
            column,
            keyword: keyword.map(str::to_string),
            message,
            unsupported,
        });
    }
}

/// A rule that did not load, with every problem found in it (the first one is the reason
/// reported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure {
    pub errors: Vec<RuleError>,
    /// The rule itself loaded but its sid was taken by an earlier one.
    pub duplicate: bool,
}

impl RuleFailure {
    /// The keywords that keep this rule from loading, each once, in rule order: unsupported
    /// ones when there are any, else the keywords of its errors (`(syntax)` when none).
    pub fn blocking_keywords(&self) -> Vec<String> {
        let unsupported = self.errors.iter().any(|e| e.unsupported);
        let mut out: Vec<String> = Vec::new();
        for e in self.errors.iter().filter(|e| e.unsupported || !unsupported) {
            let k = e.keyword.clone().unwrap_or_else(|| "(syntax)".into());
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// Whether the line is not rule-shaped: an error not about any keyword (header fields,
    /// option list, quoting).
    pub fn is_syntax(&self) -> bool {
        !self.duplicate && self.errors.iter().any(|e| e.keyword.is_none())
    }

    /// Whether every problem is a construct this engine lacks (as opposed to a malformed rule).
    pub fn only_unsupported(&self) -> bool {
        self.errors.iter().all(|e| e.unsupported)
    }
}

/// Parses all rules of one file, in file order: each line is a rule or the reasons it is not.
/// Sid uniqueness is checked by the caller across files.
pub(crate) fn parse_rules(text: &str, file: &str, vars: &Vars) -> Vec<Result<Rule, RuleFailure>> {
    let file_arc: Arc<str> = Arc::from(file);
    logical_lines(text)
        .iter()
        .map(|line| {
            let mut ctx = Ctx {
                file,
                line,
                errors: Vec::new(),
            };
            match parse_rule(&mut ctx, vars, &file_arc) {
                Some(r) if ctx.errors.is_empty() => Ok(r),
                _ => Err(RuleFailure {
                    errors: ctx.errors,
                    duplicate: false,
                }),
            }
        })
        .collect()
}

/// Header fields parsed so far; `None` where the field had an error (already reported).
struct Header {
    action: Option<Action>,
    proto: Option<Proto>,
    src: Option<Expr<Prefix>>,
    sport: Option<Expr<PortRange>>,
    direction: Option<Direction>,
    dst: Option<Expr<Prefix>>,
    dport: Option<Expr<PortRange>>,
}

fn parse_rule(ctx: &mut Ctx<'_>, vars: &Vars, file: &Arc<str>) -> Option<Rule> {
    let text = ctx.line.text.as_str();
    let Some(open) = text.find('(') else {
        ctx.err(
            0,
            None,
            "rule has no option list: expected '(' after the header",
        );
        return None;
    };
    let trimmed_end = text.trim_end();
    if !trimmed_end.ends_with(')') {
        ctx.err(
            trimmed_end.len().saturating_sub(1),
            None,
            "rule must end with ')'",
        );
        return None;
    }
    let close = trimmed_end.len() - 1;
    if close < open {
        ctx.err(close, None, "rule must end with ')'");
        return None;
    }
    let header = parse_header(ctx, text.get(..open).unwrap_or(""), vars);
    let body = text.get(open + 1..close).unwrap_or("");
    let opts = match split_options(body, open + 1) {
        Ok(o) => o,
        Err(e) => {
            ctx.err(e.off, None, e.message);
            return None;
        }
    };

    let mut b = OptionsBuilder::default();
    for o in &opts {
        b.option(ctx, o.key, o.value);
    }
    let sid = match b.sid {
        Some(s) => s,
        None => {
            if !b.sid_given {
                ctx.err(close, Some("sid"), "rule has no sid");
            }
            0
        }
    };
    let proto = header.proto;
    if let Some(p) = proto {
        check_proto_options(ctx, p, &b);
    }
    let (line_no, column) = ctx.line.pos(0);
    Some(Rule {
        action: header.action?,
        proto: proto?,
        src: header.src?,
        sport: header.sport?,
        direction: header.direction?,
        dst: header.dst?,
        dport: header.dport?,
        msg: b.msg.unwrap_or_default(),
        sid,
        rev: b.rev.unwrap_or(0),
        contents: b.contents.into_iter().map(|(c, _)| c).collect(),
        flags: b.flags.map(|x| x.0),
        dsize: b.dsize.map(|x| x.0),
        itype: b.itype.map(|x| x.0),
        icode: b.icode.map(|x| x.0),
        ip_proto: b.ip_proto.map(|x| x.0),
        ttl: b.ttl.map(|x| x.0),
        checks: b.checks,
        flow: b.flow.map(|x| x.0),
        threshold: b.threshold.map(|x| x.0),
        location: Location {
            file: Arc::clone(file),
            line: line_no,
            column,
        },
    })
}

fn parse_header(ctx: &mut Ctx<'_>, header: &str, vars: &Vars) -> Header {
    let mut h = Header {
        action: None,
        proto: None,
        src: None,
        sport: None,
        direction: None,
        dst: None,
        dport: None,
    };
    let toks = header_tokens(header, 0);
    if toks.len() != 7 {
        let off = toks.get(7).map_or(header.trim_end().len(), |t| t.off);
        ctx.err(
            off,
            None,
            format!(
                "rule header needs 7 fields (action proto src sport -> dst dport), found {}",
                toks.len()
            ),
        );
        return h;
    }
    let t = |i: usize| toks[i];
    let a = t(0);
    h.action = match a.text {
        "alert" => Some(Action::Alert),
        "drop" => Some(Action::Drop),
        "pass" => Some(Action::Pass),
        // Suricata's reject actions and its firewall-mode `action:hook` forms are real
        // actions this box does not implement; anything else is a typo.
        other if other.starts_with("reject") || other.contains(':') => {
            ctx.unsupported(
                a.off,
                other,
                format!("unsupported action '{other}' (supported: alert, drop, pass)"),
            );
            None
        }
        other => {
            ctx.err(
                a.off,
                Some(other),
                format!("unsupported action '{other}' (supported: alert, drop, pass)"),
            );
            None
        }
    };
    let p = t(1);
    h.proto = match p.text.to_ascii_lowercase().as_str() {
        "ip" => Some(Proto::Ip),
        // `tcp-pkt`: Suricata's "packets, not the reassembled stream" is what this box does.
        "tcp" | "tcp-pkt" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "icmp" => Some(Proto::Icmp),
        "icmpv4" => Some(Proto::Icmpv4),
        "icmpv6" => Some(Proto::Icmpv6),
        "http" => Some(Proto::Http),
        "dns" => Some(Proto::Dns),
        "tls" => Some(Proto::Tls),
        _ => {
            ctx.unsupported(
                p.off,
                p.text,
                format!(
                    "unsupported protocol '{}' (supported: ip, tcp, udp, icmp, icmpv4, icmpv6, http, dns, tls)",
                    p.text
                ),
            );
            None
        }
    };
    let d = t(4);
    h.direction = match d.text {
        "->" => Some(Direction::Forward),
        "<>" => Some(Direction::Both),
        other => {
            ctx.err(
                d.off,
                Some(other),
                format!("unsupported direction '{other}' (supported: ->, <>)"),
            );
            None
        }
    };
    h.src = addr(ctx, t(2), vars);
    h.dst = addr(ctx, t(5), vars);
    // Suricata accepts ports on `ip` rules (ET has 16): they then match packets that carry
    // ports (tcp, udp) and no others.
    let ports_allowed = !matches!(h.proto, Some(Proto::Icmp | Proto::Icmpv4 | Proto::Icmpv6));
    h.sport = port(ctx, t(3), vars, ports_allowed);
    h.dport = port(ctx, t(6), vars, ports_allowed);
    h
}

fn addr(ctx: &mut Ctx<'_>, s: Span<'_>, vars: &Vars) -> Option<Expr<Prefix>> {
    match parse_expr::<Prefix>(s.text, vars) {
        Ok(e) => Some(e),
        Err(e) => {
            ctx.err(s.off + e.off, None, e.message);
            None
        }
    }
}

fn port(ctx: &mut Ctx<'_>, s: Span<'_>, vars: &Vars, allowed: bool) -> Option<Expr<PortRange>> {
    match parse_expr::<PortRange>(s.text, vars) {
        Ok(Expr::Any) => Some(Expr::Any),
        Ok(_) if !allowed => {
            ctx.err(
                s.off,
                None,
                "ports can only be given for tcp, udp and ip rules; use 'any'",
            );
            None
        }
        Ok(e) => Some(e),
        Err(e) => {
            ctx.err(s.off + e.off, None, e.message);
            None
        }
    }
}

/// Options collected from one rule, each with the offset of its keyword for later checks.
#[derive(Default)]
struct OptionsBuilder {
    msg: Option<String>,
    sid: Option<u32>,
    /// A `sid` option was present, valid or not (an invalid one is reported once, not twice).
    sid_given: bool,
    rev: Option<u32>,
    contents: Vec<(Content, usize)>,
    flags: Option<(FlagsMatch, usize)>,
    dsize: Option<(NumMatch, usize)>,
    itype: Option<(NumMatch, usize)>,
    icode: Option<(NumMatch, usize)>,
    ip_proto: Option<(NumMatch, usize)>,
    ttl: Option<(NumMatch, usize)>,
    checks: Vec<Check>,
    flow: Option<(Flow, usize)>,
    threshold: Option<(Threshold, usize)>,
    /// The sticky buffer in force for the next content/pcre/byte_*/isdataat/bsize.
    buf: BufSel,
}

/// Reports a keyword error as unsupported or malformed.
fn kw_err(ctx: &mut Ctx<'_>, off: usize, k: &str, e: KwError) {
    let msg = format!("'{k}': {}", e.message);
    if e.unsupported {
        ctx.unsupported(off, k, msg);
    } else {
        ctx.err(off, Some(k), msg);
    }
}

fn set_once<T>(ctx: &mut Ctx<'_>, slot: &mut Option<(T, usize)>, v: T, key: Span<'_>) {
    if slot.is_some() {
        ctx.err(key.off, Some(key.text), format!("duplicate '{}'", key.text));
    } else {
        *slot = Some((v, key.off));
    }
}

impl OptionsBuilder {
    fn option(&mut self, ctx: &mut Ctx<'_>, key: Span<'_>, value: Option<Span<'_>>) {
        let k = key.text;
        let missing = |ctx: &mut Ctx<'_>| {
            ctx.err(key.off, Some(k), format!("'{k}' needs a value"));
        };
        match k {
            "msg" => {
                let Some(v) = value else { return missing(ctx) };
                match msg_text(v.text) {
                    Ok(m) if self.msg.is_none() => self.msg = Some(m),
                    Ok(_) => ctx.err(key.off, Some(k), "duplicate 'msg'"),
                    Err((o, m)) => ctx.err(v.off + o, Some(k), m),
                }
            }
            "sid" | "rev" => {
                self.sid_given |= k == "sid";
                let Some(v) = value else { return missing(ctx) };
                let n = match v.text.parse::<u32>() {
                    Ok(n) if k == "rev" || n > 0 => n,
                    _ => {
                        let what = if k == "sid" {
                            "a positive integer"
                        } else {
                            "an integer"
                        };
                        return ctx.err(
                            v.off,
                            Some(k),
                            format!("'{k}' must be {what}, got '{}'", v.text),
                        );
                    }
                };
                let slot = if k == "sid" {
                    &mut self.sid
                } else {
                    &mut self.rev
                };
                if slot.is_some() {
                    ctx.err(key.off, Some(k), format!("duplicate '{k}'"));
                } else {
                    *slot = Some(n);
                }
            }
            _ if IGNORED_KEYWORDS.contains(&k) => {
                if value.is_none() {
                    missing(ctx)
                }
            }
            "content" => {
                let Some(v) = value else { return missing(ctx) };
                if self.contents.len() >= MAX_CONTENTS {
                    return ctx.err(
                        key.off,
                        Some(k),
                        format!("more than {MAX_CONTENTS} contents in one rule"),
                    );
                }
                match parse_content(v.text) {
                    Ok(mut c) => {
                        c.buf = self.buf;
                        self.contents.push((c, key.off))
                    }
                    Err((o, m)) => ctx.err(v.off + o, Some(k), m),
                }
            }
            "nocase" | "fast_pattern" | "offset" | "depth" | "distance" | "within" => {
                self.modifier(ctx, key, value);
            }
            "startswith" | "endswith" => {
                let Some((c, _)) = self.contents.last_mut() else {
                    return ctx.err(key.off, Some(k), format!("'{k}' must follow a 'content'"));
                };
                // Suricata: startswith excludes the position modifiers; endswith combines
                // with them (the match must also end at the buffer end).
                if k == "startswith" && (c.is_relative() || c.offset.is_some() || c.depth.is_some())
                {
                    return ctx.err(
                        key.off,
                        Some(k),
                        format!("'{k}' cannot be combined with offset/depth/distance/within"),
                    );
                }
                if k == "startswith" {
                    c.startswith = true;
                } else {
                    c.endswith = true;
                }
            }
            "dotprefix" => {
                if !self.buf.buffer.is_name() {
                    return ctx.unsupported(
                        key.off,
                        k,
                        "'dotprefix' is supported on dns.query, tls.sni and http.host only",
                    );
                }
                self.buf.dotprefix = true;
            }
            _ if Buffer::from_keyword(k).is_some() => {
                if value.is_some() {
                    return ctx.err(key.off, Some(k), format!("'{k}' takes no value"));
                }
                if let Some(b) = Buffer::from_keyword(k) {
                    self.buf = BufSel {
                        buffer: b,
                        dotprefix: false,
                    };
                }
            }
            "pcre" | "byte_test" | "byte_jump" | "isdataat" | "bsize" | "urilen" => {
                let Some(v) = value else { return missing(ctx) };
                let parsed = match k {
                    "pcre" => keywords::parse_pcre(v.text).map(CheckKind::Pcre),
                    "byte_test" => keywords::parse_byte_test(v.text).map(CheckKind::ByteTest),
                    "byte_jump" => keywords::parse_byte_jump(v.text).map(CheckKind::ByteJump),
                    "isdataat" => keywords::parse_isdataat(v.text),
                    _ => {
                        let t = v.text.split(',').next().unwrap_or("");
                        parse_num_match(t, u32::from(u16::MAX), |_| None)
                            .map(CheckKind::Bsize)
                            .map_err(|m| KwError {
                                unsupported: false,
                                message: m,
                            })
                    }
                };
                let buf = if k == "urilen" {
                    BufSel {
                        buffer: Buffer::HttpUri,
                        dotprefix: false,
                    }
                } else {
                    self.buf
                };
                match parsed {
                    Ok(kind) => self.checks.push(Check {
                        after_contents: self.contents.len(),
                        buf,
                        kind,
                    }),
                    Err(e) => kw_err(ctx, v.off, k, e),
                }
            }
            "flow" => {
                let Some(v) = value else { return missing(ctx) };
                match keywords::parse_flow(v.text) {
                    Ok(f) => set_once(ctx, &mut self.flow, f, key),
                    Err(e) => kw_err(ctx, v.off, k, e),
                }
            }
            "threshold" | "detection_filter" => {
                let Some(v) = value else { return missing(ctx) };
                match keywords::parse_threshold(v.text, k == "detection_filter") {
                    Ok(t) => set_once(ctx, &mut self.threshold, t, key),
                    Err(e) => kw_err(ctx, v.off, k, e),
                }
            }
            "flags" => {
                let Some(v) = value else { return missing(ctx) };
                match parse_flags(v.text) {
                    Ok(f) => set_once(ctx, &mut self.flags, f, key),
                    Err(m) => ctx.err(v.off, Some(k), m),
                }
            }
            "dsize" | "itype" | "icode" | "ip_proto" | "ttl" => {
                let Some(v) = value else { return missing(ctx) };
                let max = match k {
                    "dsize" => u32::from(u16::MAX),
                    _ => u32::from(u8::MAX),
                };
                let parsed = if k == "ip_proto" {
                    parse_num_match(v.text, max, proto_number)
                } else {
                    parse_num_match(v.text, max, |_| None)
                };
                let m = match parsed {
                    Ok(m) => m,
                    Err(m) => return ctx.err(v.off, Some(k), format!("'{k}': {m}")),
                };
                let slot = match k {
                    "dsize" => &mut self.dsize,
                    "itype" => &mut self.itype,
                    "icode" => &mut self.icode,
                    "ip_proto" => &mut self.ip_proto,
                    _ => &mut self.ttl,
                };
                set_once(ctx, slot, m, key);
            }
            _ => {
                ctx.unsupported(key.off, k, format!("unsupported keyword '{k}'"));
            }
        }
    }

    fn modifier(&mut self, ctx: &mut Ctx<'_>, key: Span<'_>, value: Option<Span<'_>>) {
        let k = key.text;
        let Some((c, _)) = self.contents.last_mut() else {
            return ctx.err(key.off, Some(k), format!("'{k}' must follow a 'content'"));
        };
        let dup = |ctx: &mut Ctx<'_>| {
            ctx.err(key.off, Some(k), format!("duplicate '{k}' for one content"))
        };
        match k {
            "nocase" | "fast_pattern" => {
                // `fast_pattern:only` only tunes Suricata's prefilter (the content is still
                // verified here, which cannot change a result); `offset,length` chops the
                // pattern the prefilter looks for.
                if k == "nocase" {
                    if let Some(v) = value {
                        return ctx.err(v.off, Some(k), "'nocase' takes no value");
                    }
                    if c.nocase {
                        return dup(ctx);
                    }
                    c.nocase = true;
                } else {
                    if c.negated {
                        return ctx.err(
                            key.off,
                            Some(k),
                            "'fast_pattern' cannot be used on a negated content",
                        );
                    }
                    c.fast_pattern = true;
                    match value.map(|v| v.text.trim()) {
                        None | Some("only") => {}
                        Some(args) => {
                            let chop = args.split_once(',').and_then(|(a, b)| {
                                Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
                            });
                            match chop {
                                Some((o, l))
                                    if l > 0
                                        && usize::from(o) + usize::from(l) <= c.bytes.len() =>
                                {
                                    c.fast_pattern_chop = Some((o, l))
                                }
                                _ => ctx.err(
                                    key.off,
                                    Some(k),
                                    format!(
                                        "'fast_pattern' takes 'only' or 'offset,length' \
                                         within the content, got '{args}'"
                                    ),
                                ),
                            }
                        }
                    }
                }
            }
            _ => {
                let Some(v) = value else {
                    return ctx.err(key.off, Some(k), format!("'{k}' needs a value"));
                };
                let taken = match k {
                    "offset" => c.offset.is_some(),
                    "depth" => c.depth.is_some(),
                    "distance" => c.distance.is_some(),
                    _ => c.within.is_some(),
                };
                if taken {
                    return dup(ctx);
                }
                let relative = matches!(k, "distance" | "within");
                let n: Option<i64> = v.text.parse::<i64>().ok();
                let lo = if k == "distance" { -65535 } else { 0 };
                let n = match n {
                    Some(n) if (lo..=65535).contains(&n) => n,
                    _ => {
                        return ctx.err(
                            v.off,
                            Some(k),
                            format!("'{k}' must be an integer in {lo}..=65535, got '{}'", v.text),
                        )
                    }
                };
                if c.startswith {
                    return ctx.err(
                        key.off,
                        Some(k),
                        format!("'{k}' cannot be combined with startswith"),
                    );
                }
                if relative && (c.offset.is_some() || c.depth.is_some())
                    || !relative && c.is_relative()
                {
                    return ctx.err(
                        key.off,
                        Some(k),
                        format!(
                            "'{k}' cannot be combined with {} on one content",
                            if relative {
                                "offset/depth"
                            } else {
                                "distance/within"
                            }
                        ),
                    );
                }
                let len = c.bytes.len() as i64;
                if matches!(k, "depth" | "within") && n < len {
                    return ctx.err(
                        v.off,
                        Some(k),
                        format!("'{k}' {n} is shorter than the content ({len} bytes)"),
                    );
                }
                // `n` is range-checked above, so these conversions always succeed.
                match k {
                    "offset" => c.offset = u16::try_from(n).ok(),
                    "depth" => c.depth = u16::try_from(n).ok(),
                    "distance" => c.distance = i32::try_from(n).ok(),
                    _ => c.within = u16::try_from(n).ok(),
                }
            }
        }
    }
}

/// Options that only make sense for some protocols are rejected on others, so that a rule
/// that could never match is an error rather than a silent no-op.
fn check_proto_options(ctx: &mut Ctx<'_>, p: Proto, b: &OptionsBuilder) {
    if let Some((_, off)) = b.flags {
        if !matches!(p, Proto::Tcp | Proto::Ip | Proto::Http | Proto::Tls) {
            ctx.err(
                off,
                Some("flags"),
                "'flags' needs a tcp, http, tls or ip rule",
            );
        }
    }
    for (slot, name) in [(&b.itype, "itype"), (&b.icode, "icode")] {
        if let Some((_, off)) = slot {
            if !matches!(p, Proto::Icmp | Proto::Icmpv4 | Proto::Icmpv6 | Proto::Ip) {
                ctx.err(
                    *off,
                    Some(name),
                    format!("'{name}' needs an icmp, icmpv4, icmpv6 or ip rule"),
                );
            }
        }
    }
}

fn proto_number(name: &str) -> Option<u32> {
    use crate::wire::ip_protocol;
    match name.to_ascii_lowercase().as_str() {
        "icmp" => Some(ip_protocol::ICMP.into()),
        "igmp" => Some(2),
        "tcp" => Some(ip_protocol::TCP.into()),
        "udp" => Some(ip_protocol::UDP.into()),
        "gre" => Some(47),
        "esp" => Some(ip_protocol::ESP.into()),
        "ah" => Some(ip_protocol::AH.into()),
        "icmpv6" | "ipv6-icmp" => Some(ip_protocol::ICMPV6.into()),
        "sctp" => Some(132),
        _ => None,
    }
}

/// `N`, `=N`, `!N`, `<N`, `>N`, `<=N`, `>=N`, `A<>B` (exclusive, as Suricata's dsize/itype).
pub(crate) fn parse_num_match(
    s: &str,
    max: u32,
    named: impl Fn(&str) -> Option<u32>,
) -> Result<NumMatch, String> {
    let num = |t: &str| -> Result<u32, String> {
        let t = t.trim();
        let n = match t.parse::<u32>() {
            Ok(n) => n,
            Err(_) => named(t).ok_or_else(|| format!("expected a number, got '{t}'"))?,
        };
        if n > max {
            return Err(format!("{n} is above the maximum {max}"));
        }
        Ok(n)
    };
    let s = s.trim();
    let exact = |n: u32, negated| NumMatch {
        lo: n,
        hi: n,
        negated,
    };
    if let Some((a, b)) = s.split_once("<>") {
        let (a, b) = (num(a)?, num(b)?);
        if b <= a.saturating_add(1) {
            return Err(format!("empty range '{s}': A<>B matches A < x < B"));
        }
        return Ok(NumMatch {
            lo: a + 1,
            hi: b - 1,
            negated: false,
        });
    }
    if let Some(r) = s.strip_prefix("<=") {
        return Ok(NumMatch {
            lo: 0,
            hi: num(r)?,
            negated: false,
        });
    }
    if let Some(r) = s.strip_prefix(">=") {
        return Ok(NumMatch {
            lo: num(r)?,
            hi: max,
            negated: false,
        });
    }
    if let Some(r) = s.strip_prefix('<') {
        let n = num(r)?;
        if n == 0 {
            return Err("'<0' never matches".into());
        }
        return Ok(NumMatch {
            lo: 0,
            hi: n - 1,
            negated: false,
        });
    }
    if let Some(r) = s.strip_prefix('>') {
        let n = num(r)?;
        if n >= max {
            return Err(format!("'>{n}' never matches"));
        }
        return Ok(NumMatch {
            lo: n + 1,
            hi: max,
            negated: false,
        });
    }
    if let Some(r) = s.strip_prefix('!') {
        return Ok(exact(num(r)?, true));
    }
    if let Some(r) = s.strip_prefix('=') {
        return Ok(exact(num(r)?, false));
    }
    Ok(exact(num(s)?, false))
}

/// `[+*!]FLAGS[+*!][,IGNORED]` with F S R P A U C E (and Snort's 1 2 for CWR/ECE); `0` = none.
pub(crate) fn parse_flags(s: &str) -> Result<FlagsMatch, String> {
    let (main, ignore) = match s.split_once(',') {
        Some((m, i)) => (m.trim(), Some(i.trim())),
        None => (s.trim(), None),
    };
    let bits = |t: &str, allow_zero: bool| -> Result<u8, String> {
        let mut v = 0u8;
        for ch in t.chars() {
            v |= match ch.to_ascii_uppercase() {
                'F' => 0x01,
                'S' => 0x02,
                'R' => 0x04,
                'P' => 0x08,
                'A' => 0x10,
                'U' => 0x20,
                'E' | '2' => 0x40,
                'C' | '1' => 0x80,
                '0' if allow_zero && t.len() == 1 => 0,
                _ => {
                    return Err(format!(
                        "unknown TCP flag '{ch}' in '{s}' (use F S R P A U C E, 0)"
                    ))
                }
            };
        }
        Ok(v)
    };
    let mut mode = FlagsMode::Exact;
    let mut letters = main;
    for (prefix, m) in [
        ('+', FlagsMode::All),
        ('*', FlagsMode::Any),
        ('!', FlagsMode::Not),
    ] {
        if let Some(r) = letters
            .strip_prefix(prefix)
            .or_else(|| letters.strip_suffix(prefix))
        {
            if mode != FlagsMode::Exact {
                return Err(format!("more than one modifier in '{s}'"));
            }
            mode = m;
            letters = r;
        }
    }
    if letters.is_empty() {
        return Err(format!("no flags in '{s}'"));
    }
    let flags = bits(letters, mode == FlagsMode::Exact)?;
    let ignore = match ignore {
        Some("") => return Err(format!("empty ignore mask in '{s}'")),
        Some(i) => bits(i, false)?,
        None => 0,
    };
    Ok(FlagsMatch {
        flags,
        ignore,
        mode,
    })
}

/// A `content` value: optional `!`, then a quoted string with `|hex|` parts and `\"` `\;` `\\`
/// escapes. Errors carry an offset into `s`.
pub(crate) fn parse_content(s: &str) -> Result<Content, (usize, String)> {
    let (negated, rest, base) = match s.strip_prefix('!') {
        Some(r) => {
            let t = r.trim_start();
            (true, t, s.len() - t.len())
        }
        None => (false, s, 0),
    };
    let bytes = quoted(rest).map_err(|(o, m)| (base + o, m))?;
    if bytes.is_empty() {
        return Err((base, "empty content".into()));
    }
    let mut c = Content::new(&bytes);
    c.negated = negated;
    Ok(c)
}

/// A `msg` value: plain text in quotes, where `\` escapes `" ; \ : ,` and is kept before
/// anything else (ET writes `(c \windows)`, `[\d\s]`). Unlike content
/// it has no `|hex|` parts (ET writes `|` and `\\` in messages).
pub(crate) fn msg_text(s: &str) -> Result<String, (usize, String)> {
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or((0, "expected a double-quoted string".to_string()))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some(e @ ('"' | ';' | '\\' | ':' | ',')) => {
                out.push(e);
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    Ok(out)
}

/// Decodes `"..."` with `|hex|` segments and the escapes Suricata accepts (`\"` `\;` `\:`
/// `\\`).
pub(crate) fn quoted(s: &str) -> Result<Vec<u8>, (usize, String)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Err((0, "expected a double-quoted string".into()));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 1;
    let mut hex: Option<usize> = None;
    let mut nibble: Option<u8> = None;
    loop {
        let Some(&c) = b.get(i) else {
            return Err((s.len(), "unterminated string".into()));
        };
        if let Some(hstart) = hex {
            match c {
                b'|' => {
                    if nibble.is_some() {
                        return Err((i, "odd number of hex digits".into()));
                    }
                    hex = None;
                }
                b' ' | b'\t' => {
                    if nibble.is_some() {
                        return Err((i, "hex bytes must be two digits".into()));
                    }
                }
                b'"' => return Err((hstart, "unterminated '|' hex block".into())),
                _ => {
                    let Some(d) = (c as char).to_digit(16) else {
                        return Err((i, format!("invalid hex digit '{}'", c as char)));
                    };
                    // to_digit(16) < 16, so the cast is exact.
                    let d = d as u8;
                    match nibble.take() {
                        Some(hi) => out.push(hi << 4 | d),
                        None => nibble = Some(d),
                    }
                }
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                if i + 1 != b.len() {
                    return Err((i + 1, "unexpected text after the closing quote".into()));
                }
                return Ok(out);
            }
            b'|' => hex = Some(i),
            b'\\' => match b.get(i + 1) {
                Some(&e @ (b'"' | b';' | b'\\' | b':')) => {
                    out.push(e);
                    i += 1;
                }
                _ => {
                    return Err((
                        i,
                        "invalid escape (only \\\" \\; \\: \\\\ are allowed)".into(),
                    ))
                }
            },
            _ => out.push(c),
        }
        i += 1;
    }
}
