//! The per-packet side: prefilter scan, candidate verification, action precedence.

use std::sync::Arc;

use crate::headers::{IpHeaders, Transport};
use crate::stage::StageResult;
use crate::{DropReason, Headers, Meta, Verdict};

use super::compile::{CContent, CRule, CompiledRules, RuleInfo, Window};
use super::parse::{Action, Direction, Proto};

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
}

/// What verification reads from a packet, extracted once.
struct Pkt<'a> {
    ip: &'a IpHeaders,
    payload: &'a [u8],
}

impl SignatureStage {
    pub fn new(rules: Arc<CompiledRules>) -> Self {
        let n = rules.len();
        SignatureStage {
            rules,
            hits: vec![0; n],
            stamps: vec![0; n],
            generation: 0,
            matched: Vec::with_capacity(n),
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
    pub fn process(&mut self, frame: &[u8], hdr: &Headers, _meta: &Meta) -> StageResult {
        let Some(ip) = hdr.ip() else {
            return StageResult::Continue;
        };
        let start = usize::from(ip.payload_off);
        let end = start
            .saturating_add(usize::from(ip.payload_len))
            .min(frame.len());
        let payload = frame.get(start..end).unwrap_or(&[]);
        let pkt = Pkt { ip, payload };

        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        let gen = self.generation;
        let Self {
            rules,
            stamps,
            matched,
            hits,
            ..
        } = self;
        let rules: &CompiledRules = rules;
        matched.clear();
        let mut consider = |r: u32| {
            let i = r as usize;
            let (Some(stamp), Some(rule)) = (stamps.get_mut(i), rules.rules.get(i)) else {
                return;
            };
            if *stamp == gen {
                return;
            }
            *stamp = gen;
            if verify(rule, &pkt) && matched.len() < matched.capacity() {
                matched.push(r);
            }
        };

        if let (Some(ac), false) = (&rules.ac, payload.is_empty()) {
            if let Ok(iter) = ac.try_find_overlapping_iter(payload) {
                for m in iter {
                    for &r in rules.rules_for_pattern(m.pattern().as_usize()) {
                        consider(r);
                    }
                }
            }
        }
        for &r in &rules.hdr_ip {
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

fn bump(hits: &mut [u64], r: u32) {
    if let Some(h) = hits.get_mut(r as usize) {
        *h = h.saturating_add(1);
    }
}

fn ports(t: &Transport) -> Option<(u16, u16)> {
    match *t {
        Transport::Tcp(t) => Some((t.sport, t.dport)),
        Transport::Udp { sport, dport } => Some((sport, dport)),
        _ => None,
    }
}

/// Full check of one rule against one packet: header first (cheap), contents last.
fn verify(rule: &CRule, pkt: &Pkt<'_>) -> bool {
    let ip = pkt.ip;
    let proto_ok = matches!(
        (rule.proto, &ip.transport),
        (Proto::Ip, _)
            | (Proto::Tcp, Transport::Tcp(_))
            | (Proto::Udp, Transport::Udp { .. })
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
    let ports_any = rule.sport == super::expr::Expr::Any && rule.dport == super::expr::Expr::Any;
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
    if let Some(f) = &rule.flags {
        match &ip.transport {
            Transport::Tcp(t) if f.matches(t.flags) => {}
            _ => return false,
        }
    }
    let icmp = match ip.transport {
        Transport::Icmp { ty, code } | Transport::Icmpv6 { ty, code } => Some((ty, code)),
        _ => None,
    };
    let num_ok = |m: &Option<super::parse::NumMatch>, v: Option<u32>| match (m, v) {
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
    let mut budget = BACKTRACK_BUDGET;
    contents_match(&rule.contents, 0, pkt.payload, 0, &mut budget)
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
    let s = usize::try_from(s.clamp(0, len_i)).ok()?;
    let e = usize::try_from(e.clamp(0, len_i)).ok()?;
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

/// True when contents `i..` can all be placed. A positive content is tried at each occurrence
/// in its window (only the first when nothing later depends on its position); a negated one
/// must be absent from its window and leaves `prev_end` unchanged.
fn contents_match(
    cs: &[CContent],
    i: usize,
    payload: &[u8],
    prev_end: usize,
    budget: &mut u32,
) -> bool {
    let Some(c) = cs.get(i) else {
        return true;
    };
    let win = window(c, prev_end, payload.len());
    if c.negated {
        let present = win.is_some_and(|(s, e)| find(c, payload, s, e).is_some());
        return !present && contents_match(cs, i + 1, payload, prev_end, budget);
    }
    let Some((s, e)) = win else {
        return false;
    };
    let mut from = s;
    while let Some(p) = find(c, payload, from, e) {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if contents_match(cs, i + 1, payload, p + c.pat.len(), budget) {
            return true;
        }
        if !c.backtrack {
            return false;
        }
        from = p + 1;
    }
    false
}
