//! Parsed rules → the immutable structure the per-packet matcher walks.
//!
//! Three indexes keep the per-packet cost independent of the rule count:
//!
//! * Content rules: one "fast pattern" per rule (the content marked `fast_pattern`, else the
//!   content at least 4 bytes long that the fewest rules share, then the longest) goes into the
//!   prefilter group of every class the rule can match in (transport, recognised application
//!   protocol, destination port; see `prefilter`). A packet scans only its groups, each with
//!   one Vectorscan database (memchr's memmem for ≤ 3 case-sensitive patterns), and as far into
//!   the payload as the group's patterns can lie; only the rules whose pattern occurs are
//!   verified, each once per packet.
//! * Address-list rules without content (ET's ciarmy, compromised, drop, tor ...): indexed by
//!   the source or destination address they name (`addrset`).
//! * Other header-only rules (no content, or only negated contents): bucketed by protocol, and
//!   for tcp/udp rules with a `->` direction and a small set of destination ports (≤ 64 ports
//!   in total), by destination port. A packet checks its protocol's wildcard list, the list for
//!   its destination port, and the `ip` list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex_automata::meta;

use memchr::memmem;

use super::addrset::{AddrIndex, AddrSet};
use super::expr::{Expr, PortRange, Vars};
use super::keywords::{BufSel, Buffer, ByteJump, ByteTest, CheckKind, Flow, Threshold};
use super::parse::{
    parse_rules, Action, Content, Direction, FlagsMatch, Location, NumMatch, Proto, Rule,
    RuleError, RuleErrors, RuleFailure,
};
use super::prefilter::{Class, Entry, Prefilter};
use super::SignatureError;

/// A rules file (or several) parsed and checked, not yet compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// How one rules file loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    pub file: String,
    pub loaded: usize,
    pub skipped: usize,
}

/// What loading produced: Suricata-style, a rule this engine cannot evaluate is skipped, named
/// with `file:line:col`, its keyword and the reason, and counted by keyword.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Every rule that did not load, in file order.
    pub failures: Vec<RuleFailure>,
    pub files: Vec<FileReport>,
}

impl LoadReport {
    /// Skipped rules per keyword, most frequent first (then by name). A rule blocked by two
    /// keywords counts under both, so the counts may add up to more than the skipped total.
    pub fn by_keyword(&self) -> Vec<(String, usize)> {
        let mut m: HashMap<String, usize> = HashMap::new();
        for f in &self.failures {
            for k in f.blocking_keywords() {
                *m.entry(k).or_default() += 1;
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Skipped rules that are malformed rather than merely unsupported.
    pub fn errors(&self) -> usize {
        self.failures
            .iter()
            .filter(|f| !f.only_unsupported())
            .count()
    }

    /// One line: loaded, skipped, malformed.
    pub fn summary(&self) -> String {
        format!(
            "signature rules: {} loaded, {} skipped ({} unsupported, {} malformed)",
            self.loaded,
            self.failures.len(),
            self.failures.len() - self.errors(),
            self.errors()
        )
    }

    /// The summary, the per-keyword table and the first `detail` skipped rules with their
    /// reason (`file:line:col: message`).
    pub fn render(&self, detail: usize) -> String {
        let mut out = self.summary();
        out.push('\n');
        let by_kw = self.by_keyword();
        if !by_kw.is_empty() {
            out.push_str("skipped by keyword:");
            for (k, n) in &by_kw {
                out.push_str(&format!(" {k}={n}"));
            }
            out.push('\n');
        }
        for f in self.failures.iter().take(detail) {
            if let Some(e) = f.errors.first() {
                out.push_str(&format!("skipped {e}\n"));
            }
        }
        if self.failures.len() > detail {
            out.push_str(&format!(
                "... and {} more skipped rules\n",
                self.failures.len() - detail
            ));
        }
        out
    }
}

impl RuleSet {
    /// Parses rule text strictly (any problem is an error); `source_name` is used in error
    /// messages and rule locations. All problems are collected, including duplicate sids.
    pub fn parse(text: &str, source_name: &str, vars: &Vars) -> Result<RuleSet, RuleErrors> {
        let (set, report) = Self::parse_lenient(text, source_name, vars);
        if report.failures.is_empty() {
            Ok(set)
        } else {
            Err(RuleErrors(
                report.failures.into_iter().flat_map(|f| f.errors).collect(),
            ))
        }
    }

    /// Parses rule text, skipping (and reporting) every rule that does not load.
    pub fn parse_lenient(text: &str, source_name: &str, vars: &Vars) -> (RuleSet, LoadReport) {
        let mut set = RuleSet::default();
        let mut report = LoadReport::default();
        set.add_parsed(
            parse_rules(text, source_name, vars),
            source_name,
            &mut report,
        );
        (set, report)
    }

    /// Reads and parses one rules file strictly.
    pub fn load(path: &Path, vars: &Vars) -> Result<RuleSet, SignatureError> {
        Self::load_all(std::slice::from_ref(&path.to_path_buf()), vars)
    }

    /// Reads and parses several files strictly into one set, in the given order (which fixes
    /// the rule indices). Errors from all files are collected; sids must be unique across files.
    pub fn load_all(paths: &[PathBuf], vars: &Vars) -> Result<RuleSet, SignatureError> {
        Self::load_files(paths, vars, true).map(|(s, _)| s)
    }

    /// Reads and parses several files (in parallel; the result keeps the given order). With
    /// `strict`, any problem refuses the whole set, as before. Without, a rule that does not
    /// load is skipped and reported, like Suricata; a file is still an error when it cannot be
    /// read, or when none of its rules loads and every one of them is not even rule-shaped (a
    /// header or option-list error: not a rules file at all).
    pub fn load_files(
        paths: &[PathBuf],
        vars: &Vars,
        strict: bool,
    ) -> Result<(RuleSet, LoadReport), SignatureError> {
        use rayon::prelude::*;
        let parsed: Vec<(String, Vec<Result<Rule, RuleFailure>>)> = paths
            .par_iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|source| SignatureError::Io {
                    path: p.clone(),
                    source,
                })?;
                let name = p.display().to_string();
                let rules = parse_rules(&text, &name, vars);
                Ok((name, rules))
            })
            .collect::<Result<_, SignatureError>>()?;
        let mut set = RuleSet::default();
        let mut report = LoadReport::default();
        let mut hopeless = Vec::new();
        for (name, rules) in parsed {
            let before = report.failures.len();
            let loaded = set.add_parsed(rules, &name, &mut report);
            let fails = &report.failures[before..];
            if loaded == 0 && !fails.is_empty() && fails.iter().all(RuleFailure::is_syntax) {
                hopeless.extend(fails.iter().flat_map(|f| f.errors.iter().cloned()));
            }
        }
        if strict && !report.failures.is_empty() {
            return Err(SignatureError::Rules(RuleErrors(
                report.failures.into_iter().flat_map(|f| f.errors).collect(),
            )));
        }
        if !hopeless.is_empty() {
            return Err(SignatureError::Rules(RuleErrors(hopeless)));
        }
        Ok((set, report))
    }

    /// Appends parsed rules, turning duplicate sids into failures; returns how many loaded.
    fn add_parsed(
        &mut self,
        parsed: Vec<Result<Rule, RuleFailure>>,
        name: &str,
        report: &mut LoadReport,
    ) -> usize {
        let mut seen: HashMap<u32, Location> = self
            .rules
            .iter()
            .map(|r| (r.sid, r.location.clone()))
            .collect();
        let (mut loaded, mut skipped) = (0, 0);
        for item in parsed {
            let r = match item {
                Ok(r) => r,
                Err(f) => {
                    skipped += 1;
                    report.failures.push(f);
                    continue;
                }
            };
            if let Some(first) = seen.get(&r.sid) {
                skipped += 1;
                report.failures.push(RuleFailure {
                    errors: vec![RuleError {
                        file: r.location.file.to_string(),
                        line: r.location.line,
                        column: r.location.column,
                        keyword: Some("sid".into()),
                        message: format!(
                            "duplicate sid {} (first used at {}:{})",
                            r.sid, first.file, first.line
                        ),
                        unsupported: false,
                    }],
                    duplicate: true,
                });
                continue;
            }
            seen.insert(r.sid, r.location.clone());
            self.rules.push(r);
            loaded += 1;
        }
        report.loaded += loaded;
        report.files.push(FileReport {
            file: name.to_string(),
            loaded,
            skipped,
        });
        loaded
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A set from already parsed rules (sids are not re-checked).
    pub fn from_rules(rules: Vec<Rule>) -> RuleSet {
        RuleSet { rules }
    }

    /// Keeps `n` rules spread evenly over the set (every k-th, in order), for benchmarks that
    /// want "N real rules" without favouring the first files.
    pub fn sample(&mut self, n: usize) {
        let len = self.rules.len();
        if n >= len {
            return;
        }
        let mut i = 0usize;
        self.rules.retain(|_| {
            // Keep rule i when it starts a new 1/n-th of the set.
            let keep = (i * n) / len != ((i + 1) * n) / len;
            i += 1;
            keep
        });
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Builds the matcher for packets stamped at [`DEFAULT_TSC_HZ`] (threshold windows count
    /// in those ticks). Rule indices are positions in [`RuleSet::rules`].
    ///
    /// [`DEFAULT_TSC_HZ`]: super::DEFAULT_TSC_HZ
    pub fn compile(&self) -> Result<CompiledRules, SignatureError> {
        let report = LoadReport {
            loaded: self.rules.len(),
            ..LoadReport::default()
        };
        CompiledRules::build(&self.rules, report, super::DEFAULT_TSC_HZ)
    }

    /// Builds the matcher for packets stamped by a `tsc_hz` clock and keeps the load report
    /// with it (for `--check` and `rules`).
    pub fn compile_with_report(
        &self,
        report: LoadReport,
        tsc_hz: u64,
    ) -> Result<CompiledRules, SignatureError> {
        CompiledRules::build(&self.rules, report, tsc_hz)
    }
}

/// What a report needs to name a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub sid: u32,
    pub rev: u32,
    pub msg: String,
    pub action: Action,
    pub location: Location,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Window {
    Absolute { offset: u16, depth: Option<u16> },
    Relative { distance: i32, within: Option<u16> },
}

#[derive(Clone, Debug)]
pub(crate) struct CContent {
    /// Lowercased when `nocase`, so verification compares against folded bytes only once.
    pub pat: Vec<u8>,
    /// Precompiled searcher for case-sensitive contents (built here so matching never
    /// allocates); `None` means nocase, matched by folded comparison.
    pub finder: Option<memmem::Finder<'static>>,
    pub negated: bool,
    pub window: Window,
    /// `endswith`: the match must end at the buffer end.
    pub endswith: bool,
    /// Whether a later step's position depends on where this one matched; if not, the
    /// matcher never needs to retry this content at a later occurrence.
    pub backtrack: bool,
}

/// One inspection step of a rule, in rule order, on one buffer.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub buf: BufSel,
    pub kind: StepKind,
}

#[derive(Clone, Debug)]
pub(crate) enum StepKind {
    /// Boxed: the precompiled searcher makes contents much larger than the other steps.
    Content(Box<CContent>),
    /// Index into [`CompiledRules::regexes`].
    Pcre {
        regex: u32,
        negated: bool,
        relative: bool,
    },
    ByteTest(ByteTest),
    ByteJump(ByteJump),
    IsDataAt {
        offset: u16,
        relative: bool,
        negated: bool,
    },
    Bsize(NumMatch),
}

impl StepKind {
    /// Whether the step reads the cursor left by the previous one.
    fn relative(&self) -> bool {
        match self {
            StepKind::Content(c) => matches!(c.window, Window::Relative { .. }),
            StepKind::Pcre { relative, .. } => *relative,
            StepKind::ByteTest(t) => t.relative,
            StepKind::ByteJump(j) => j.relative,
            StepKind::IsDataAt { relative, .. } => *relative,
            StepKind::Bsize(_) => false,
        }
    }

    /// Whether the step sets the cursor without reading it (so steps after it cannot
    /// depend on earlier positions).
    fn resets_cursor(&self) -> bool {
        match self {
            StepKind::Content(c) => !c.negated && !self.relative(),
            StepKind::Pcre { negated, .. } => !negated && !self.relative(),
            StepKind::ByteJump(j) => !j.relative || j.from_beginning,
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CRule {
    pub action: Action,
    pub proto: Proto,
    pub direction: Direction,
    pub src: AddrSet,
    pub sport: Expr<PortRange>,
    pub dst: AddrSet,
    pub dport: Expr<PortRange>,
    pub steps: Vec<Step>,
    pub flags: Option<FlagsMatch>,
    pub dsize: Option<NumMatch>,
    pub itype: Option<NumMatch>,
    pub icode: Option<NumMatch>,
    pub ip_proto: Option<NumMatch>,
    pub ttl: Option<NumMatch>,
    pub flow: Option<Flow>,
    pub threshold: Option<Threshold>,
}

/// Header-only rules of one transport protocol, split by destination port where possible.
#[derive(Clone, Debug, Default)]
pub(crate) struct PortBuckets {
    pub wild: Vec<u32>,
    /// CSR offsets into `rules`, 65537 entries; empty when no rule is port-bucketed.
    pub starts: Vec<u32>,
    pub rules: Vec<u32>,
}

impl PortBuckets {
    pub fn for_port(&self, port: u16) -> &[u32] {
        let p = usize::from(port);
        match (self.starts.get(p), self.starts.get(p + 1)) {
            (Some(&a), Some(&b)) => self.rules.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn build(wild: Vec<u32>, by_port: Vec<(u16, u32)>) -> Self {
        if by_port.is_empty() {
            return PortBuckets {
                wild,
                ..Default::default()
            };
        }
        let mut counts = vec![0u32; 65537];
        for &(p, _) in &by_port {
            counts[usize::from(p) + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let starts = counts.clone();
        let mut fill = counts;
        let mut rules = vec![0u32; by_port.len()];
        for (p, r) in by_port {
            let slot = &mut fill[usize::from(p)];
            rules[*slot as usize] = r;
            *slot += 1;
        }
        PortBuckets {
            wild,
            starts,
            rules,
        }
    }
}

/// The compiled, shareable rule set: built once, read by every worker's [`super::SignatureStage`].
#[derive(Debug)]
pub struct CompiledRules {
    pub(crate) rules: Vec<CRule>,
    /// Every pcre of every rule; each worker keeps one search cache per entry.
    pub(crate) regexes: Vec<Arc<meta::Regex>>,
    pub(crate) info: Vec<RuleInfo>,
    pub(crate) prefilter: Prefilter,
    /// Header-only rules found by the packet's source / destination address.
    pub(crate) hdr_src: AddrIndex,
    pub(crate) hdr_dst: AddrIndex,
    pub(crate) hdr_ip: Vec<u32>,
    pub(crate) hdr_icmp4: Vec<u32>,
    pub(crate) hdr_icmp6: Vec<u32>,
    pub(crate) hdr_tcp: PortBuckets,
    pub(crate) hdr_udp: PortBuckets,
    pub(crate) report: LoadReport,
    /// threshold / detection_filter windows, shared by every worker running this rule set.
    pub(crate) windows: super::threshold::Windows,
}

/// Most destination ports a header-only rule may expand to and still be bucketed by port.
const MAX_BUCKET_PORTS: u32 = 64;

fn bucket_ports(e: &Expr<PortRange>) -> Option<Vec<u16>> {
    let ranges: Vec<PortRange> = match e {
        Expr::Leaf(r) => vec![*r],
        Expr::List(items) => {
            let mut v = Vec::new();
            for it in items {
                match it {
                    Expr::Leaf(r) => v.push(*r),
                    _ => return None,
                }
            }
            v
        }
        _ => return None,
    };
    let total: u32 = ranges
        .iter()
        .map(|r| u32::from(r.hi) - u32::from(r.lo) + 1)
        .sum();
    if total > MAX_BUCKET_PORTS {
        return None;
    }
    let mut ports: Vec<u16> = ranges.iter().flat_map(|r| r.lo..=r.hi).collect();
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

fn compile_content(c: &Content) -> CContent {
    let window = if c.is_relative() {
        Window::Relative {
            distance: c.distance.unwrap_or(0),
            within: c.within,
        }
    } else if c.startswith {
        Window::Absolute {
            offset: 0,
            depth: u16::try_from(c.bytes.len()).ok(),
        }
    } else {
        Window::Absolute {
            offset: c.offset.unwrap_or(0),
            depth: c.depth,
        }
    };
    // http.host and the other name buffers are lowercased copies (as Suricata normalises
    // http.host); matching their contents without case keeps them equivalent.
    let nocase = c.nocase || c.buf.buffer == Buffer::HttpHost;
    let pat = if nocase {
        c.bytes.to_ascii_lowercase()
    } else {
        c.bytes.clone()
    };
    CContent {
        finder: (!nocase).then(|| memmem::Finder::new(&pat).into_owned()),
        pat,
        negated: c.negated,
        window,
        endswith: c.endswith,
        backtrack: false,
    }
}

/// The rule's steps in rule order: each check goes before the content it was written before.
fn compile_steps(rule: &Rule, regexes: &mut Vec<Arc<meta::Regex>>) -> Vec<Step> {
    let mut steps = Vec::with_capacity(rule.contents.len() + rule.checks.len());
    let mut checks = rule.checks.iter().peekable();
    for i in 0..=rule.contents.len() {
        while let Some(ch) = checks.next_if(|c| c.after_contents <= i) {
            let kind = match &ch.kind {
                CheckKind::Pcre(p) => {
                    regexes.push(Arc::clone(&p.regex));
                    StepKind::Pcre {
                        regex: u32::try_from(regexes.len() - 1).unwrap_or(u32::MAX),
                        negated: p.negated,
                        relative: p.relative,
                    }
                }
                CheckKind::ByteTest(t) => StepKind::ByteTest(*t),
                CheckKind::ByteJump(j) => StepKind::ByteJump(*j),
                CheckKind::IsDataAt {
                    offset,
                    relative,
                    negated,
                } => StepKind::IsDataAt {
                    offset: *offset,
                    relative: *relative,
                    negated: *negated,
                },
                CheckKind::Bsize(m) => StepKind::Bsize(*m),
            };
            steps.push(Step { buf: ch.buf, kind });
        }
        if let Some(c) = rule.contents.get(i) {
            steps.push(Step {
                buf: c.buf,
                kind: StepKind::Content(Box::new(compile_content(c))),
            });
        }
    }
    // A positive content needs retrying at later occurrences only if a later step in the same
    // buffer reads its position before anything resets the cursor.
    for i in 0..steps.len() {
        let dependent = steps[i + 1..]
            .iter()
            .take_while(|s| s.buf == steps[i].buf)
            .find(|s| s.kind.relative() || s.kind.resets_cursor())
            .is_some_and(|s| s.kind.relative());
        if let StepKind::Content(c) = &mut steps[i].kind {
            c.backtrack = dependent && !c.negated;
        }
    }
    steps
}

/// A content the prefilter could look for in the raw payload: one that is sure to appear there
/// whenever the rule matches. Contents of name buffers (dns.query is decoded from
/// length-prefixed labels) contribute their longest part without a `.`.
struct Candidate {
    /// Lowercased when `nocase`.
    bytes: Vec<u8>,
    /// Found regardless of case: a `nocase` content, or one on http.host (a lowercased copy
    /// of what the payload carries in any case).
    nocase: bool,
    /// http.method contents ("GET", "POST") occur in most requests: last resort only.
    method: bool,
    /// The payload offset the content must end by, when it is an absolute payload content
    /// with a depth (`offset` + `depth`, or its length for `startswith`): the prefilter need
    /// not scan past it. `None`: anywhere.
    bound: Option<usize>,
}

/// Where an absolute payload content must end by (see [`Candidate::bound`]). Contents with
/// `distance`/`within` (relative, or from the buffer start on a first content) are left
/// unbounded here: being conservative only costs scan bytes.
fn payload_bound(c: &Content) -> Option<usize> {
    if c.buf.buffer != Buffer::Payload || c.distance.is_some() || c.within.is_some() {
        return None;
    }
    let offset = usize::from(c.offset.unwrap_or(0));
    if c.startswith {
        return Some(offset + c.bytes.len());
    }
    c.depth.map(|d| offset + usize::from(d))
}

fn candidates(rule: &Rule) -> Vec<Candidate> {
    let candidate = |c: &Content| -> Option<Candidate> {
        let bytes = match c.fast_pattern_chop {
            Some((o, l)) => c
                .bytes
                .get(usize::from(o)..usize::from(o) + usize::from(l))?,
            None => &c.bytes[..],
        };
        let part = if c.buf.buffer.is_name() {
            bytes.split(|&b| b == b'.').max_by_key(|p| p.len())?
        } else {
            bytes
        };
        let nocase = c.nocase || c.buf.buffer == Buffer::HttpHost;
        (!part.is_empty()).then(|| Candidate {
            bytes: if nocase {
                part.to_ascii_lowercase()
            } else {
                part.to_vec()
            },
            nocase,
            method: c.buf.buffer == Buffer::HttpMethod,
            bound: payload_bound(c),
        })
    };
    let positive = || rule.contents.iter().filter(|c| !c.negated);
    // An explicit fast_pattern is the operator's (or ET's) choice: take it as is.
    if let Some(fp) = positive().filter(|c| c.fast_pattern).find_map(candidate) {
        return vec![fp];
    }
    positive().filter_map(candidate).collect()
}

/// A rule's fast pattern: its bytes (lowercased when nocase), whether case is ignored, and
/// the payload offset it ends by ([`Candidate::bound`]).
type FastPattern = (Vec<u8>, bool, Option<usize>);

/// One fast pattern per rule, Suricata-style: an explicit `fast_pattern`, else the content
/// that is long enough to be selective (4 bytes) and shared by the fewest rules (so one
/// common string does not make hundreds of rules candidates), then the longest.
fn choose_fast_patterns(rules: &[Rule]) -> Vec<Option<FastPattern>> {
    let cands: Vec<Vec<Candidate>> = rules.iter().map(candidates).collect();
    let mut freq: HashMap<Vec<u8>, u32> = HashMap::new();
    for cs in &cands {
        for c in cs {
            *freq.entry(c.bytes.to_ascii_lowercase()).or_default() += 1;
        }
    }
    cands
        .iter()
        .map(|cs| {
            cs.iter()
                .max_by_key(|c| {
                    let f = freq
                        .get(&c.bytes.to_ascii_lowercase())
                        .copied()
                        .unwrap_or(0);
                    (
                        !c.method,
                        c.bytes.len().min(4),
                        std::cmp::Reverse(f),
                        c.bytes.len(),
                    )
                })
                .map(|c| (c.bytes.clone(), c.nocase, c.bound))
        })
        .collect()
}

/// The prefilter classes a rule can only match in: an application buffer or protocol pins the
/// application class, else the transport does (an `ip` rule is in every transport's class).
fn rule_classes(rule: &Rule) -> Vec<Class> {
    let bufs = || {
        rule.contents
            .iter()
            .map(|c| c.buf.buffer)
            .chain(rule.checks.iter().map(|c| c.buf.buffer))
    };
    if bufs().any(Buffer::is_http_request_only) {
        return vec![Class::HttpRequest];
    }
    if bufs().any(Buffer::is_http) {
        return vec![Class::Http];
    }
    if bufs().any(|b| b == Buffer::DnsQuery) {
        return vec![Class::DnsQuery];
    }
    if bufs().any(|b| b == Buffer::TlsSni) {
        return vec![Class::Tls];
    }
    match rule.proto {
        Proto::Http => vec![Class::Http],
        Proto::Tls => vec![Class::Tls],
        Proto::Dns => vec![Class::Dns],
        Proto::Tcp => vec![Class::Tcp],
        Proto::Udp => vec![Class::Udp],
        Proto::Ip => vec![Class::Tcp, Class::Udp, Class::Other],
        Proto::Icmp | Proto::Icmpv4 | Proto::Icmpv6 => vec![Class::Other],
    }
}

impl CompiledRules {
    fn build(
        rules: &[Rule],
        report: LoadReport,
        tsc_hz: u64,
    ) -> Result<CompiledRules, SignatureError> {
        let n = u32::try_from(rules.len())
            .map_err(|_| SignatureError::Compile("more than 2^32 rules".into()))?;
        let mut entries = Vec::new();
        let fast = choose_fast_patterns(rules);
        let (mut by_src, mut by_dst) = (Default::default(), Default::default());
        let (mut n_src, mut n_dst) = (0, 0);
        let mut hdr_ip = Vec::new();
        let mut hdr_icmp4 = Vec::new();
        let mut hdr_icmp6 = Vec::new();
        let (mut tcp_wild, mut tcp_ports) = (Vec::new(), Vec::new());
        let (mut udp_wild, mut udp_ports) = (Vec::new(), Vec::new());

        for ((idx, rule), fp) in (0..n).zip(rules).zip(fast) {
            if let Some((pattern, nocase, bound)) = fp {
                // Only a port-pinned `->` rule on tcp/udp is grouped by destination port
                // (an app-class rule too: its transport is still tcp or udp).
                let dports = match (rule.direction, rule.proto) {
                    (Direction::Forward, p)
                        if !matches!(
                            p,
                            Proto::Ip | Proto::Icmp | Proto::Icmpv4 | Proto::Icmpv6
                        ) =>
                    {
                        bucket_ports(&rule.dport)
                    }
                    _ => None,
                };
                entries.push(Entry {
                    rule: idx,
                    pattern,
                    nocase,
                    bound,
                    classes: rule_classes(rule),
                    dports,
                });
                continue;
            }
            // Address-list rules (ET's ciarmy, compromised, drop, tor, botcc ...) are found by
            // the packet's address instead of being checked on every packet.
            if rule.direction == Direction::Forward {
                let (src, dst) = (AddrSet::compile(&rule.src), AddrSet::compile(&rule.dst));
                if AddrIndex::offer(&mut by_src, &src, idx) {
                    n_src += 1;
                    continue;
                }
                if AddrIndex::offer(&mut by_dst, &dst, idx) {
                    n_dst += 1;
                    continue;
                }
            }
            match rule.proto {
                Proto::Ip => hdr_ip.push(idx),
                Proto::Icmp => {
                    hdr_icmp4.push(idx);
                    hdr_icmp6.push(idx);
                }
                Proto::Icmpv4 => hdr_icmp4.push(idx),
                Proto::Icmpv6 => hdr_icmp6.push(idx),
                Proto::Tcp | Proto::Udp | Proto::Http | Proto::Tls | Proto::Dns => {
                    let bucket = match rule.direction {
                        Direction::Forward => bucket_ports(&rule.dport),
                        Direction::Both => None,
                    };
                    let tcp = rule.proto != Proto::Udp;
                    let udp = matches!(rule.proto, Proto::Udp | Proto::Dns);
                    for (on, wild, ports) in [
                        (tcp, &mut tcp_wild, &mut tcp_ports),
                        (udp, &mut udp_wild, &mut udp_ports),
                    ] {
                        if !on {
                            continue;
                        }
                        match &bucket {
                            Some(ps) => ports.extend(ps.iter().map(|&p| (p, idx))),
                            None => wild.push(idx),
                        }
                    }
                }
            }
        }

        let prefilter = Prefilter::build(entries).map_err(SignatureError::Compile)?;
        let hdr_src = AddrIndex::build(by_src, n_src);
        let hdr_dst = AddrIndex::build(by_dst, n_dst);
        let mut regexes = Vec::new();
        let compiled: Vec<CRule> = rules
            .iter()
            .map(|r| CRule {
                action: r.action,
                proto: r.proto,
                direction: r.direction,
                src: AddrSet::compile(&r.src),
                sport: r.sport.clone(),
                dst: AddrSet::compile(&r.dst),
                dport: r.dport.clone(),
                steps: compile_steps(r, &mut regexes),
                flags: r.flags,
                dsize: r.dsize,
                itype: r.itype,
                icode: r.icode,
                ip_proto: r.ip_proto,
                ttl: r.ttl,
                flow: r.flow,
                threshold: r.threshold,
            })
            .collect();
        let info = rules
            .iter()
            .map(|r| RuleInfo {
                sid: r.sid,
                rev: r.rev,
                msg: r.msg.clone(),
                action: r.action,
                location: r.location.clone(),
            })
            .collect();
        let windows =
            super::threshold::Windows::new(compiled.iter().any(|r| r.threshold.is_some()), tsc_hz);
        Ok(CompiledRules {
            windows,
            rules: compiled,
            regexes,
            info,
            prefilter,
            hdr_src,
            hdr_dst,
            hdr_ip,
            hdr_icmp4,
            hdr_icmp6,
            hdr_tcp: PortBuckets::build(tcp_wild, tcp_ports),
            hdr_udp: PortBuckets::build(udp_wild, udp_ports),
            report,
        })
    }

    /// Parses, checks and compiles text in one step.
    pub fn from_text(text: &str, source_name: &str, vars: &Vars) -> Result<Self, SignatureError> {
        RuleSet::parse(text, source_name, vars)?.compile()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// sid, rev, msg, action and location per rule index.
    pub fn rules_info(&self) -> &[RuleInfo] {
        &self.info
    }

    /// What loading skipped and why.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// How rules are split between the prefilter and the always-checked lists (diagnostics).
    pub fn layout(&self) -> String {
        format!(
            "prefiltered {} rules under {} patterns in {} groups; by source address {}, by destination address {}; checked without prefilter: ip {}, icmp4 {}, icmp6 {}, tcp any-port {} + by port {}, udp any-port {} + by port {}",
            self.prefilter.rules,
            self.pattern_count(),
            self.prefilter.groups.len(),
            self.hdr_src.len,
            self.hdr_dst.len,
            self.hdr_ip.len(),
            self.hdr_icmp4.len(),
            self.hdr_icmp6.len(),
            self.hdr_tcp.wild.len(),
            self.hdr_tcp.rules.len(),
            self.hdr_udp.wild.len(),
            self.hdr_udp.rules.len(),
        )
    }

    /// Fast patterns over all prefilter groups (a pattern in two groups counts twice).
    pub fn pattern_count(&self) -> usize {
        self.prefilter.patterns
    }

    /// The fast patterns of each prefilter group (`(bytes, nocase)`; bytes lowercased when
    /// nocase), indexed by the group ids [`SignatureStage::scan_plan`] reports. They exist so
    /// that other multi-pattern engines can be measured on exactly the pattern sets and
    /// haystacks this stage scans (`scrubd-mpm-bench`), without going through the stage.
    ///
    /// [`SignatureStage::scan_plan`]: super::SignatureStage::scan_plan
    pub fn mpm_groups(&self) -> impl ExactSizeIterator<Item = &[(Vec<u8>, bool)]> {
        self.prefilter.groups.iter().map(|g| g.patterns.as_slice())
    }
}
