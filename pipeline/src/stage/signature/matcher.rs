//! The per-packet side: prefilter scan, candidate verification, action precedence.

use std::sync::Arc;

use crate::headers::{IpHeaders, Transport};
use crate::stage::StageResult;
use crate::{DropReason, Headers, Meta, Verdict};

use regex_automata::{meta, Input};

use super::buffers::{App, Buffers};
use super::compile::{CContent, CRule, CompiledRules, RuleInfo, Step, StepKind, Window};
use super::expr::Expr;
use super::keywords::Flow;
use super::parse::{Action, Direction, NumMatch, Proto};
use super::prefilter::Class;

/// Upper bound on content placements tried per rule and packet. Backtracking over repeated
/// occurrences is exponential in the worst case; like Suricata's inspection recursion limit
/// (3000 by default), a rule that exhausts it is treated as not matching.
pub const BACKTRACK_BUDGET: u32 = 3000;

/// Matches packets against a shared [`CompiledRules`]. One per worker: it owns the hit counters
/// and the scratch space, all sized at construction so `process` never allocates.
#[derive(Debug)]
pub struct SignatureStage {
    rules: Arc<CompiledRules>,
    hits: Vec<u64>,
    /// Generation stamps per rule: a rule is already handled for this packet when its stamp
    /// equals `generation`, so the candidate set needs no clearing between packets.
    stamps: Vec<u32>,
    generation: u32,
    /// Rules that matched the current packet; capacity = rule count, so pushes never allocate.
    matched: Vec<u32>,
    /// Boxed so a stage stays small to move (workers receive new ones through a channel).
    scratch: Box<Scratch>,
    /// Off only for the oracle comparison, which compares matching, not rate decisions.
    thresholds: bool,
}

/// Per-worker state beyond the per-rule arrays.
#[derive(Debug)]
struct Scratch {
    /// Per prefilter pattern, like `stamps`: the pattern's rules were visited this packet.
    pat_stamps: Vec<u32>,
    /// Sticky buffers of the current packet.
    bufs: Buffers,
    /// One search cache per pcre (regex-automata's caches are per searcher, not shared).
    caches: Vec<meta::Cache>,
    /// This worker's Vectorscan scratch space, sized for every prefilter group.
    vs: super::prefilter::VsScratch,
}

/// What verification reads from a packet, extracted once.
struct Pkt<'a> {
    ip: &'a IpHeaders,
    payload: &'a [u8],
    tcp: bool,
}

impl SignatureStage {
    pub fn new(rules: Arc<CompiledRules>) -> Self {
        let n = rules.len();
        SignatureStage {
            hits: vec![0; n],
            stamps: vec![0; n],
            generation: 0,
            matched: Vec::with_capacity(n),
            scratch: Box::new(Scratch {
                pat_stamps: vec![0; rules.prefilter.patterns],
                bufs: Buffers::new(),
                caches: rules.regexes.iter().map(|r| r.create_cache()).collect(),
                vs: rules.prefilter.scratch(),
            }),
            thresholds: true,
            rules,
        }
    }

    /// Hit count per rule index (see [`SignatureStage::rules_info`] for what each index is).
    pub fn counters(&self) -> &[u64] {
        &self.hits
    }

    pub fn rules_info(&self) -> &[RuleInfo] {
        self.rules.rules_info()
    }

    pub fn rules(&self) -> &Arc<CompiledRules> {
        &self.rules
    }

    /// Runs all rules on one frame. Among matching rules `pass` wins (→ forward, and only the
    /// pass rules are counted), then `drop` (→ drop naming the lowest matching drop rule index;
    /// every matching drop and alert rule is counted), then `alert` (counted, → continue).
    pub fn process(&mut self, frame: &[u8], hdr: &Headers, meta: &Meta) -> StageResult {
        let Some(ip) = hdr.ip() else {
            return StageResult::Continue;
        };
        let start = usize::from(ip.payload_off);
        let end = start
            .saturating_add(usize::from(ip.payload_len))
            .min(frame.len());
        let payload = frame.get(start..end).unwrap_or(&[]);
        let tcp = matches!(ip.transport, Transport::Tcp(_));
        let pkt = Pkt { ip, payload, tcp };

        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.scratch.pat_stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        let gen = self.generation;
        let Self {
            rules,
            stamps,
            matched,
            hits,
            scratch,
            thresholds,
            ..
        } = self;
        let thresholds = *thresholds;
        let Scratch {
            pat_stamps,
            bufs,
            caches,
            vs,
        } = &mut **scratch;
        let rules: &CompiledRules = rules;
        matched.clear();
        bufs.reset();
        let now = meta.tsc;
        let pf = &rules.prefilter;
        let (classes, dport) = packet_classes(pf, bufs, ip, payload, tcp);
        let mut consider = |r: u32| {
            let i = r as usize;
            let (Some(stamp), Some(rule)) = (stamps.get_mut(i), rules.rules.get(i)) else {
                return;
            };
            if *stamp == gen {
                return;
            }
            *stamp = gen;
            if !verify(rule, &pkt, bufs, &rules.regexes, caches) {
                return;
            }
            if let Some(t) = rule.threshold.as_ref().filter(|_| thresholds) {
                if !rules.windows.fire(r, t, ip.src, ip.dst, now) {
                    return;
                }
            }
            if matched.len() < matched.capacity() {
                matched.push(r);
            }
        };

        if !payload.is_empty() {
            let pf = &rules.prefilter;
            for c in classes.into_iter().flatten() {
                for g in pf.groups(c, dport).into_iter().flatten() {
                    let mut visit = |p: usize| {
                        // Each pattern's rules once per packet, however often it occurs.
                        let gid = g.base as usize + p;
                        match pat_stamps.get_mut(gid) {
                            Some(s) if *s != gen => *s = gen,
                            _ => return,
                        }
                        for &r in g.rules_for(p) {
                            consider(r);
                        }
                    };
                    if g.scanner
                        .for_each(g.hay(payload), vs.get(), &mut visit)
                        .is_err()
                    {
                        // The scan did not complete: any pattern may occur, so every rule
                        // of the group is verified (slower, never a missed match).
                        (0..g.patterns.len()).for_each(visit);
                    }
                }
            }
        }
        for &r in rules
            .hdr_src
            .lookup(ip.src)
            .iter()
            .chain(rules.hdr_dst.lookup(ip.dst))
            .chain(&rules.hdr_ip)
        {
            consider(r);
        }
        match ip.transport {
            Transport::Tcp(t) => {
                for &r in rules
                    .hdr_tcp
                    .wild
                    .iter()
                    .chain(rules.hdr_tcp.for_port(t.dport))
                {
                    consider(r);
                }
            }
            Transport::Udp { dport, .. } => {
                for &r in rules
                    .hdr_udp
                    .wild
                    .iter()
                    .chain(rules.hdr_udp.for_port(dport))
                {
                    consider(r);
                }
            }
            Transport::Icmp { .. } => rules.hdr_icmp4.iter().for_each(|&r| consider(r)),
            Transport::Icmpv6 { .. } => rules.hdr_icmp6.iter().for_each(|&r| consider(r)),
            Transport::None | Transport::Other => {}
        }

        let action = |r: u32| rules.rules.get(r as usize).map(|x| x.action);
        let any_pass = matched.iter().any(|&r| action(r) == Some(Action::Pass));
        if any_pass {
            for &r in matched.iter() {
                if action(r) == Some(Action::Pass) {
                    bump(hits, r);
                }
            }
            return StageResult::Done(Verdict::Forward);
        }
        let mut drop: Option<u32> = None;
        for &r in matched.iter() {
            bump(hits, r);
            if action(r) == Some(Action::Drop) && drop.is_none_or(|d| r < d) {
                drop = Some(r);
            }
        }
        match drop {
            Some(d) => StageResult::Done(Verdict::Drop(DropReason::Signature(d))),
            None => StageResult::Continue,
        }
    }
}

impl SignatureStage {
    /// What the prefilter scans for this frame, verifying nothing: `out` gets one
    /// `(group id, payload start, payload end)` per group scanned (group ids index
    /// [`CompiledRules::mpm_groups`]; offsets are into `frame`). For measuring other
    /// multi-pattern engines on exactly this stage's work (`scrubd-mpm-bench`).
    pub fn scan_plan(&mut self, frame: &[u8], hdr: &Headers, out: &mut Vec<(usize, usize, usize)>) {
        out.clear();
        let Some(ip) = hdr.ip() else {
            return;
        };
        let start = usize::from(ip.payload_off);
        let end = start
            .saturating_add(usize::from(ip.payload_len))
            .min(frame.len());
        let Some(payload) = frame.get(start..end).filter(|p| !p.is_empty()) else {
            return;
        };
        let tcp = matches!(ip.transport, Transport::Tcp(_));
        let Self { rules, scratch, .. } = self;
        scratch.bufs.reset();
        let pf = &rules.prefilter;
        let (classes, dport) = packet_classes(pf, &mut scratch.bufs, ip, payload, tcp);
        for c in classes.into_iter().flatten() {
            for g in pf.groups(c, dport).into_iter().flatten() {
                if let Some(gid) = pf.groups.iter().position(|x| std::ptr::eq(x, g)) {
                    out.push((gid, start, start + g.hay(payload).len()));
                }
            }
        }
    }

    /// Runs prefilter group `gid`'s scanner (with this stage's scratch space) over `hay`,
    /// calling `f` with each pattern index that occurs; `false` when the scan failed or the
    /// group does not exist. The stage's engine, for comparison with others.
    pub fn mpm_scan(&mut self, gid: usize, hay: &[u8], f: impl FnMut(usize)) -> bool {
        match self.rules.prefilter.groups.get(gid) {
            Some(g) => g.scanner.for_each(hay, self.scratch.vs.get(), f).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
impl SignatureStage {
    /// Rules the prefiltered stage finds matching this frame (thresholds ignored), sorted.
    pub(crate) fn prefiltered_matches(&mut self, frame: &[u8], hdr: &Headers) -> Vec<u32> {
        self.thresholds = false;
        self.matched.clear();
        self.process(frame, hdr, &Meta::default());
        self.thresholds = true;
        let mut v = self.matched.clone();
        v.sort_unstable();
        v
    }

    /// The brute-force oracle: every rule verified on the frame, no prefilter, sorted.
    pub(crate) fn oracle_matches(&mut self, frame: &[u8], hdr: &Headers) -> Vec<u32> {
        let Some(ip) = hdr.ip() else {
            return Vec::new();
        };
        let start = usize::from(ip.payload_off);
        let end = start
            .saturating_add(usize::from(ip.payload_len))
            .min(frame.len());
        let payload = frame.get(start..end).unwrap_or(&[]);
        let tcp = matches!(ip.transport, Transport::Tcp(_));
        let pkt = Pkt { ip, payload, tcp };
        self.scratch.bufs.reset();
        let rules = Arc::clone(&self.rules);
        (0u32..)
            .zip(rules.rules.iter())
            .filter(|(_, rule)| {
                let Scratch { bufs, caches, .. } = &mut *self.scratch;
                verify(rule, &pkt, bufs, &rules.regexes, caches)
            })
            .map(|(i, _)| i)
            .collect()
    }
}

/// The prefilter classes a packet belongs to (its transport's, then every application class
/// recognised in it; application detection runs only when some group needs it) and the
/// destination port its groups are chosen by.
fn packet_classes(
    pf: &super::prefilter::Prefilter,
    bufs: &mut Buffers,
    ip: &IpHeaders,
    payload: &[u8],
    tcp: bool,
) -> ([Option<Class>; 6], Option<u16>) {
    let (transport, dport) = match ip.transport {
        Transport::Tcp(t) => (Class::Tcp, Some(t.dport)),
        Transport::Udp { dport, .. } => (Class::Udp, Some(dport)),
        _ => (Class::Other, None),
    };
    let mut classes = [Some(transport), None, None, None, None, None];
    let app_classes = [
        Class::Http,
        Class::HttpRequest,
        Class::Tls,
        Class::Dns,
        Class::DnsQuery,
    ];
    if transport != Class::Other
        && !payload.is_empty()
        && app_classes.iter().any(|&c| pf.has_class(c))
    {
        let app = bufs.app(payload, tcp);
        let is_tcp = transport == Class::Tcp;
        classes[1] =
            (is_tcp && app.has(App::HTTP_REQUEST | App::HTTP_RESPONSE)).then_some(Class::Http);
        classes[2] = (is_tcp && app.has(App::HTTP_REQUEST)).then_some(Class::HttpRequest);
        classes[3] = (is_tcp && app.has(App::TLS)).then_some(Class::Tls);
        classes[4] = app.has(App::DNS).then_some(Class::Dns);
        // dns.query exists only in queries (QR clear).
        classes[5] = (app.has(App::DNS) && bufs.dns_is_response(payload, tcp) == Some(false))
            .then_some(Class::DnsQuery);
    }
    (classes, dport)
}

fn bump(hits: &mut [u64], r: u32) {
    if let Some(h) = hits.get_mut(r as usize) {
        *h = h.saturating_add(1);
    }
}

/// Full check of one rule against one packet: header first (cheap), then flow and the
/// application protocol, then the inspection steps. Threshold state is not consulted here, so
/// this is also the brute-force oracle's definition of "the rule matches".
fn verify(
    rule: &CRule,
    pkt: &Pkt<'_>,
    bufs: &mut Buffers,
    regexes: &[Arc<meta::Regex>],
    caches: &mut [meta::Cache],
) -> bool {
    let ip = pkt.ip;
    let proto_ok = matches!(
        (rule.proto, &ip.transport),
        (Proto::Ip, _)
            | (
                Proto::Tcp | Proto::Http | Proto::Tls | Proto::Dns,
                Transport::Tcp(_)
            )
            | (Proto::Udp | Proto::Dns, Transport::Udp { .. })
            | (
                Proto::Icmp,
                Transport::Icmp { .. } | Transport::Icmpv6 { .. }
            )
            | (Proto::Icmpv4, Transport::Icmp { .. })
            | (Proto::Icmpv6, Transport::Icmpv6 { .. })
    );
    if !proto_ok {
        return false;
    }
    let ports_any = rule.sport == Expr::Any && rule.dport == Expr::Any;
    let pp = ports(&ip.transport);
    let oriented = |src, dst, sp: Option<u16>, dp: Option<u16>| {
        rule.src.matches(src)
            && rule.dst.matches(dst)
            && (ports_any
                || match (sp, dp) {
                    (Some(s), Some(d)) => rule.sport.matches(s) && rule.dport.matches(d),
                    _ => false,
                })
    };
    let (sp, dp) = (pp.map(|p| p.0), pp.map(|p| p.1));
    let addr_ok = oriented(ip.src, ip.dst, sp, dp)
        || (rule.direction == Direction::Both && oriented(ip.dst, ip.src, dp, sp));
    if !addr_ok {
        return false;
    }
    let tcp_flags = match &ip.transport {
        Transport::Tcp(t) => Some(t.flags),
        _ => None,
    };
    if let Some(f) = &rule.flags {
        match tcp_flags {
            Some(fl) if f.matches(fl) => {}
            _ => return false,
        }
    }
    let icmp = match ip.transport {
        Transport::Icmp { ty, code } | Transport::Icmpv6 { ty, code } => Some((ty, code)),
        _ => None,
    };
    let num_ok = |m: &Option<NumMatch>, v: Option<u32>| match (m, v) {
        (None, _) => true,
        (Some(m), Some(v)) => m.matches(v),
        (Some(_), None) => false,
    };
    let dsize = u32::try_from(pkt.payload.len()).ok();
    if !(num_ok(&rule.dsize, dsize)
        && num_ok(&rule.ttl, Some(u32::from(ip.ttl)))
        && num_ok(&rule.ip_proto, Some(u32::from(ip.proto)))
        && num_ok(&rule.itype, icmp.map(|i| u32::from(i.0)))
        && num_ok(&rule.icode, icmp.map(|i| u32::from(i.1))))
    {
        return false;
    }
    let app_ok = match rule.proto {
        Proto::Http => bufs
            .app(pkt.payload, pkt.tcp)
            .has(App::HTTP_REQUEST | App::HTTP_RESPONSE),
        Proto::Dns => bufs.app(pkt.payload, pkt.tcp).has(App::DNS),
        Proto::Tls => bufs.app(pkt.payload, pkt.tcp).has(App::TLS),
        _ => true,
    };
    if !app_ok {
        return false;
    }
    if let Some(f) = &rule.flow {
        if !flow_ok(f, rule, pkt, bufs, tcp_flags, (sp, dp)) {
            return false;
        }
    }
    for s in &rule.steps {
        if !bufs.ensure(s.buf, pkt.payload, pkt.tcp) {
            return false;
        }
    }
    let mut cx = Cx {
        steps: &rule.steps,
        payload: pkt.payload,
        bufs,
        regexes,
        caches,
        budget: BACKTRACK_BUDGET,
    };
    steps_match(&mut cx, 0, 0)
}

/// `flow` on one packet. Direction: what the packet itself shows first (an HTTP request or
/// response, a DNS query or response, a SYN or SYN-ACK); else the rule's header (a rule that
/// pins only the destination port describes packets to the server, only the source port
/// packets from it); else the lower port is taken as the server's. `established`: for TCP, a
/// packet with ACK and without SYN (part of a handshake-completed connection as far as one
/// packet can tell); for other protocols, every packet. `not_established` is the complement
/// for TCP and also every packet otherwise.
fn flow_ok(
    f: &Flow,
    rule: &CRule,
    pkt: &Pkt<'_>,
    bufs: &mut Buffers,
    tcp_flags: Option<u8>,
    (sp, dp): (Option<u16>, Option<u16>),
) -> bool {
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    if let (Some(want), Some(fl)) = (f.established, tcp_flags) {
        let est = fl & ACK != 0 && fl & SYN == 0;
        if est != want {
            return false;
        }
    }
    if !(f.to_server || f.to_client) {
        return true;
    }
    let app = bufs.app(pkt.payload, pkt.tcp);
    let to_server = match (app, tcp_flags) {
        (a, _) if a.has(App::HTTP_REQUEST) => true,
        (a, _) if a.has(App::HTTP_RESPONSE) => false,
        (a, _) if a.has(App::DNS) && bufs.dns_is_response(pkt.payload, pkt.tcp).is_some() => {
            bufs.dns_is_response(pkt.payload, pkt.tcp) == Some(false)
        }
        (_, Some(fl)) if fl & SYN != 0 => fl & ACK == 0,
        _ => match (rule.sport == Expr::Any, rule.dport == Expr::Any) {
            (true, false) => true,
            (false, true) => false,
            _ => match (sp, dp) {
                (Some(s), Some(d)) => d <= s,
                _ => true,
            },
        },
    };
    to_server == f.to_server
}

fn ports(t: &Transport) -> Option<(u16, u16)> {
    match *t {
        Transport::Tcp(t) => Some((t.sport, t.dport)),
        Transport::Udp { sport, dport } => Some((sport, dport)),
        _ => None,
    }
}

/// Step evaluation state for one rule on one packet.
struct Cx<'a> {
    steps: &'a [Step],
    payload: &'a [u8],
    bufs: &'a Buffers,
    regexes: &'a [Arc<meta::Regex>],
    caches: &'a mut [meta::Cache],
    budget: u32,
}

/// The byte range a content must lie in, given where the previous positive content ended;
/// `None` when the window is too small for the pattern.
fn window(c: &CContent, prev_end: usize, len: usize) -> Option<(usize, usize)> {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let prev = i64::try_from(prev_end).unwrap_or(i64::MAX);
    let (s, e) = match c.window {
        Window::Absolute { offset, depth } => {
            let o = i64::from(offset);
            (o, depth.map_or(len_i, |d| o + i64::from(d)))
        }
        Window::Relative { distance, within } => {
            let base = prev.saturating_add(i64::from(distance));
            (
                base,
                within.map_or(len_i, |w| base.saturating_add(i64::from(w))),
            )
        }
    };
    let mut s = usize::try_from(s.clamp(0, len_i)).ok()?;
    let e = usize::try_from(e.clamp(0, len_i)).ok()?;
    if c.endswith {
        // The match must end at the buffer end: only one placement is possible.
        if e != len {
            return None;
        }
        s = s.max(len.checked_sub(c.pat.len())?);
    }
    (e >= s && e - s >= c.pat.len()).then_some((s, e))
}

/// First occurrence of `c` starting at or after `from` and ending at or before `end`.
fn find(c: &CContent, hay: &[u8], from: usize, end: usize) -> Option<usize> {
    let region = hay.get(from..end)?;
    let hit = match &c.finder {
        Some(f) => f.find(region),
        None => region
            .windows(c.pat.len())
            .position(|w| w.eq_ignore_ascii_case(&c.pat)),
    };
    hit.map(|i| from + i)
}

/// The position `rel ? prev_end + off : off`, if it is not before the buffer start.
fn at(relative: bool, prev_end: usize, off: i32) -> Option<usize> {
    let base = if relative {
        i64::try_from(prev_end).ok()?
    } else {
        0
    };
    usize::try_from(base + i64::from(off)).ok()
}

/// True when steps `i..` all hold. A positive content is tried at each occurrence in its
/// window (only the first when nothing later depends on its position); a negated one must be
/// absent. A step on another buffer than the previous one starts at that buffer's start.
fn steps_match(cx: &mut Cx<'_>, i: usize, prev_end: usize) -> bool {
    let Some(step) = cx.steps.get(i) else {
        return true;
    };
    let same_buf = i > 0 && cx.steps.get(i - 1).is_some_and(|p| p.buf == step.buf);
    let pe = if same_buf { prev_end } else { 0 };
    let Some(data) = cx.bufs.peek(step.buf, cx.payload) else {
        return false;
    };
    let len = data.len();
    match &step.kind {
        StepKind::Content(c) => {
            let win = window(c, pe, len);
            if c.negated {
                let present = win.is_some_and(|(s, e)| find(c, data, s, e).is_some());
                return !present && steps_match(cx, i + 1, pe);
            }
            let Some((s, e)) = win else {
                return false;
            };
            let mut from = s;
            while let Some(p) = find(c, data, from, e) {
                if cx.budget == 0 {
                    return false;
                }
                cx.budget -= 1;
                if steps_match(cx, i + 1, p + c.pat.len()) {
                    return true;
                }
                if !c.backtrack {
                    return false;
                }
                from = p + 1;
            }
            false
        }
        StepKind::Pcre {
            regex,
            negated,
            relative,
        } => {
            let start = if *relative { pe } else { 0 };
            let idx = *regex as usize;
            let (Some(re), Some(cache), Some(hay)) = (
                cx.regexes.get(idx),
                cx.caches.get_mut(idx),
                data.get(start..),
            ) else {
                return false;
            };
            let m = re.search_with(cache, &Input::new(hay));
            match (m, *negated) {
                (Some(_), true) => false,
                (None, true) => steps_match(cx, i + 1, pe),
                (Some(m), false) => steps_match(cx, i + 1, start + m.end()),
                (None, false) => false,
            }
        }
        StepKind::ByteTest(t) => {
            let ok = at(t.relative, pe, t.offset)
                .and_then(|p| t.read.read(data, p))
                .is_some_and(|v| t.compare(v));
            ok && steps_match(cx, i + 1, pe)
        }
        StepKind::ByteJump(j) => {
            let Some(p) = at(j.relative && !j.from_beginning, pe, j.offset) else {
                return false;
            };
            let Some(v) = j.read.read(data, p) else {
                return false;
            };
            let jump = i128::from(v) * i128::from(j.multiplier);
            let base: i128 = if j.from_beginning {
                0
            } else if j.from_end {
                len as i128
            } else {
                (p + usize::from(j.read.bytes)) as i128
            };
            let mut next = base + jump;
            if j.align {
                next = (next + 3) & !3;
            }
            next += i128::from(j.post_offset);
            match usize::try_from(next) {
                Ok(n) if n <= len => steps_match(cx, i + 1, n),
                _ => false,
            }
        }
        StepKind::IsDataAt {
            offset,
            relative,
            negated,
        } => {
            // Suricata: relative holds while `prev_end + N <= len`, absolute while `N < len`.
            let present = if *relative {
                pe + usize::from(*offset) <= len
            } else {
                usize::from(*offset) < len
            };
            present != *negated && steps_match(cx, i + 1, pe)
        }
        StepKind::Bsize(m) => {
            u32::try_from(len).is_ok_and(|l| m.matches(l)) && steps_match(cx, i + 1, pe)
        }
    }
}
