//! Parsed rules → the immutable structure the per-packet matcher walks.
//!
//! Two indexes keep the per-packet cost independent of the rule count:
//!
//! * Content rules: one "fast pattern" per rule (the content marked `fast_pattern`, else the
//!   longest non-negated content, first one on ties) goes into a single Aho-Corasick automaton.
//!   One scan of the payload yields every rule whose fast pattern occurs; only those are verified.
//!   The automaton is ASCII case-insensitive for all patterns: one scan per packet instead of
//!   two (exact + nocase automatons), and a case-sensitive rule that the folded scan lets through
//!   is rejected by the exact verification. Identical folded patterns share one automaton entry.
//! * Header-only rules (no content, or only negated contents): bucketed by protocol, and for
//!   tcp/udp rules with a `->` direction and a small set of destination ports (≤ 64 ports in
//!   total), by destination port. A packet checks its protocol's wildcard list, the list for its
//!   destination port, and the `ip` list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex_automata::meta;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use memchr::memmem;

use super::expr::{Expr, PortRange, Vars};
use super::keywords::{BufSel, Buffer, ByteJump, ByteTest, CheckKind, Flow, Threshold};
use super::parse::{
    parse_rules, Action, Content, Direction, FlagsMatch, Location, NumMatch, Proto, Rule,
    RuleError, RuleErrors, RuleFailure,
};
use super::SignatureError;
use crate::prefix::Prefix;

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

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Builds the matcher. Rule indices are positions in [`RuleSet::rules`].
    pub fn compile(&self) -> Result<CompiledRules, SignatureError> {
        let report = LoadReport {
            loaded: self.rules.len(),
            ..LoadReport::default()
        };
        CompiledRules::build(&self.rules, report)
    }

    /// Builds the matcher and keeps the load report with it (for `--check` and `rules`).
    pub fn compile_with_report(&self, report: LoadReport) -> Result<CompiledRules, SignatureError> {
        CompiledRules::build(&self.rules, report)
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
    pub src: Expr<Prefix>,
    pub sport: Expr<PortRange>,
    pub dst: Expr<Prefix>,
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
    pub(crate) ac: Option<AhoCorasick>,
    /// Rules per automaton pattern, CSR: pattern `i` owns `pattern_rules[starts[i]..starts[i+1]]`.
    pub(crate) pattern_starts: Vec<u32>,
    pub(crate) pattern_rules: Vec<u32>,
    pub(crate) hdr_ip: Vec<u32>,
    pub(crate) hdr_icmp4: Vec<u32>,
    pub(crate) hdr_icmp6: Vec<u32>,
    pub(crate) hdr_tcp: PortBuckets,
    pub(crate) hdr_udp: PortBuckets,
    pub(crate) report: LoadReport,
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

/// The bytes the prefilter looks for in the raw payload, if the rule has a positive content
/// that is sure to appear there whenever the rule matches. Contents of name buffers (dns.query
/// is decoded from length-prefixed labels) contribute their longest part without a `.`.
fn fast_pattern(rule: &Rule) -> Option<Vec<u8>> {
    let candidate = |c: &Content| -> Option<Vec<u8>> {
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
        (!part.is_empty()).then(|| part.to_ascii_lowercase())
    };
    let positive = || rule.contents.iter().filter(|c| !c.negated);
    if let Some(fp) = positive().filter(|c| c.fast_pattern).find_map(candidate) {
        return Some(fp);
    }
    let mut best: Option<Vec<u8>> = None;
    for fp in positive().filter_map(candidate) {
        if best.as_ref().is_none_or(|b| fp.len() > b.len()) {
            best = Some(fp);
        }
    }
    best
}

impl CompiledRules {
    fn build(rules: &[Rule], report: LoadReport) -> Result<CompiledRules, SignatureError> {
        let n = u32::try_from(rules.len())
            .map_err(|_| SignatureError::Compile("more than 2^32 rules".into()))?;
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut pattern_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut per_pattern: Vec<Vec<u32>> = Vec::new();
        let mut hdr_ip = Vec::new();
        let mut hdr_icmp4 = Vec::new();
        let mut hdr_icmp6 = Vec::new();
        let (mut tcp_wild, mut tcp_ports) = (Vec::new(), Vec::new());
        let (mut udp_wild, mut udp_ports) = (Vec::new(), Vec::new());

        for (idx, rule) in (0..n).zip(rules) {
            if let Some(key) = fast_pattern(rule) {
                let id = *pattern_ids.entry(key.clone()).or_insert_with(|| {
                    patterns.push(key);
                    per_pattern.push(Vec::new());
                    patterns.len() - 1
                });
                per_pattern[id].push(idx);
                continue;
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

        let ac = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(None::<AhoCorasickKind>)
                    .build(&patterns)
                    .map_err(|e| SignatureError::Compile(e.to_string()))?,
            )
        };
        let mut pattern_starts = Vec::with_capacity(per_pattern.len() + 1);
        let mut pattern_rules = Vec::new();
        pattern_starts.push(0);
        for list in per_pattern {
            pattern_rules.extend(list);
            pattern_starts.push(u32::try_from(pattern_rules.len()).unwrap_or(u32::MAX));
        }

        let mut regexes = Vec::new();
        let compiled = rules
            .iter()
            .map(|r| CRule {
                action: r.action,
                proto: r.proto,
                direction: r.direction,
                src: r.src.clone(),
                sport: r.sport.clone(),
                dst: r.dst.clone(),
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
        Ok(CompiledRules {
            rules: compiled,
            regexes,
            info,
            ac,
            pattern_starts,
            pattern_rules,
            hdr_ip,
            hdr_icmp4,
            hdr_icmp6,
            hdr_tcp: PortBuckets::build(tcp_wild, tcp_ports),
            hdr_udp: PortBuckets::build(udp_wild, udp_ports),
            report,
        })
    }

    pub(crate) fn rules_for_pattern(&self, pattern: usize) -> &[u32] {
        match (
            self.pattern_starts.get(pattern),
            self.pattern_starts.get(pattern + 1),
        ) {
            (Some(&a), Some(&b)) => self
                .pattern_rules
                .get(a as usize..b as usize)
                .unwrap_or(&[]),
            _ => &[],
        }
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

    /// Distinct fast patterns in the automaton (for diagnostics).
    pub fn pattern_count(&self) -> usize {
        self.pattern_starts.len().saturating_sub(1)
    }
}
