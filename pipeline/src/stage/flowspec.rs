//! BGP FlowSpec rules (RFC 8955 for IPv4, RFC 8956 for IPv6) as a pipeline stage.
//!
//! Rules arrive from the operator's detection system through a BGP daemon and scrubd's control
//! socket as text components, the way ExaBGP prints them (`destination-ipv4 10.0.0.0/24`,
//! `destination-port [ >=80&<=90 ]`, `tcp-flags =syn`). [`FlowRule::parse`] turns one route
//! into a rule or refuses it with a reason; nothing is ever half-applied: a route with one
//! component or action scrubd cannot evaluate exactly is refused whole, because matching
//! fewer fields than the route names would drop more traffic than the operator asked for.
//!
//! The control side compiles the active rules into a [`FlowspecTable`] (at most
//! [`MAX_RULES`]), ordered as RFC 8955 §5.1 asks for the parts scrubd uses (more specific
//! destination first, then more specific source, then more components, then arrival), and
//! publishes it to every worker like an ACL table (`pipeline::Update::Flowspec`). The first
//! matching rule decides; packets no rule matches go on to the next stage.
//!
//! # Actions
//! - `discard` (traffic-rate 0): dropped and counted as drop reason `flowspec_discard`.
//! - `rate-limit N` (traffic-rate, N bytes per second): one token bucket per rule, shared by
//!   every worker (atomics, no lock), holding at most one second of traffic (never less than
//!   one 9000-byte jumbo frame); packets over it are dropped as `flowspec_rate_limited`, the
//!   rest go on to the next stage.
//! - `accept` (no traffic-action): stops the FlowSpec evaluation; later stages still run (the
//!   ACL allow list is the way to exempt traffic from everything).
//!
//! Redirect, traffic-marking, sample/terminal actions, DSCP, ICMP, flow-label, offset IPv6
//! prefixes, `dont-fragment`/`last-fragment` and `true`/`false` operators are refused.

use crate::headers::{Frag, Headers, IpHeaders, Transport};
use crate::prefix::Prefix;
use crate::stage::StageResult;
use crate::verdict::{DropReason, Verdict};
use crate::Meta;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most rules a table holds: the stage scans them in order, so this bounds its per-packet cost.
pub const MAX_RULES: usize = 1024;

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowspecError {
    #[error("component `{0}` is not supported by scrubd")]
    Unsupported(String),
    #[error("component `{key}`: {msg}")]
    Bad { key: String, msg: String },
    #[error("action `{0}` is not supported by scrubd (discard, rate-limit and accept are)")]
    Action(String),
    #[error(
        "a route without destination or source prefix is refused (it would match every packet)"
    )]
    NoPrefix,
    #[error("the table is full ({MAX_RULES} rules)")]
    Full,
}

fn bad(key: &str, msg: impl Into<String>) -> FlowspecError {
    FlowspecError::Bad {
        key: key.to_string(),
        msg: msg.into(),
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowAction {
    Discard,
    /// Bytes per second (IP length), shared by all workers.
    RateLimit(u64),
    Accept,
}

impl FlowAction {
    /// From the route's extended communities as ExaBGP prints them (`rate-limit:12500`,
    /// `redirect:65000:1`, ...). None of the FlowSpec actions means accept; communities that
    /// are not FlowSpec actions (route targets, ...) are ignored.
    pub fn from_communities(list: &[String]) -> Result<FlowAction, FlowspecError> {
        let mut action = FlowAction::Accept;
        let mut seen = false;
        for c in list {
            let c = c.trim();
            if let Some(v) = c.strip_prefix("rate-limit:") {
                let rate: f64 = v.parse().map_err(|_| FlowspecError::Action(c.into()))?;
                if !rate.is_finite() || !(0.0..=1e15).contains(&rate) {
                    return Err(FlowspecError::Action(c.into()));
                }
                if seen {
                    return Err(FlowspecError::Action(format!(
                        "{c} (a second traffic-rate)"
                    )));
                }
                seen = true;
                // Bytes per second: a float in BGP (IEEE 754); below one byte is a discard.
                action = match rate as u64 {
                    0 => FlowAction::Discard,
                    r => FlowAction::RateLimit(r),
                };
            } else if [
                "redirect",
                "mark",
                "action",
                "traffic-",
                "copy-to",
                "rate-limit-packets",
            ]
            .iter()
            .any(|p| c.starts_with(p))
            {
                return Err(FlowspecError::Action(c.into()));
            }
        }
        Ok(action)
    }

    pub fn name(&self) -> String {
        match self {
            FlowAction::Discard => "discard".into(),
            FlowAction::RateLimit(r) => format!("rate-limit {r} B/s"),
            FlowAction::Accept => "accept".into(),
        }
    }
}

/// One numeric comparison: `lt`/`gt`/`eq` bits as in RFC 8955 §4.2.1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NumTerm {
    lt: bool,
    gt: bool,
    eq: bool,
    value: u64,
}

impl NumTerm {
    fn test(&self, x: u64) -> bool {
        (self.lt && x < self.value) || (self.gt && x > self.value) || (self.eq && x == self.value)
    }
}

/// One bitmask comparison (RFC 8955 §4.2.1.2): `match` = all bits set, else any bit set;
/// `not` negates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BitTerm {
    not: bool,
    all: bool,
    mask: u8,
}

impl BitTerm {
    fn test(&self, x: u8) -> bool {
        let hit = if self.all {
            x & self.mask == self.mask
        } else {
            x & self.mask != 0
        };
        hit != self.not
    }
}

/// OR of AND-chains, as a component's list of values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AnyOf<T>(Vec<Vec<T>>);

impl AnyOf<NumTerm> {
    fn test(&self, x: u64) -> bool {
        self.0.iter().any(|and| and.iter().all(|t| t.test(x)))
    }
}

impl AnyOf<BitTerm> {
    fn test(&self, x: u8) -> bool {
        self.0.iter().any(|and| and.iter().all(|t| t.test(x)))
    }
}

/// One FlowSpec route, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRule {
    dst: Option<Prefix>,
    src: Option<Prefix>,
    proto: Option<AnyOf<NumTerm>>,
    port: Option<AnyOf<NumTerm>>,
    dport: Option<AnyOf<NumTerm>>,
    sport: Option<AnyOf<NumTerm>>,
    len: Option<AnyOf<NumTerm>>,
    tcp_flags: Option<AnyOf<BitTerm>>,
    fragment: Option<AnyOf<BitTerm>>,
    pub action: FlowAction,
    components: usize,
}

/// Fragment bits of RFC 8955 §4.2.2.12 that scrubd can tell from the parsed headers.
const FRAG_IS: u8 = 0x02;
const FRAG_FIRST: u8 = 0x04;

fn protocol_number(name: &str) -> Option<u64> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "egp" => 8,
        "udp" => 17,
        "rsvp" => 46,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "ospf" => 89,
        "pim" => 103,
        "sctp" => 132,
        _ => return None,
    })
}

fn tcp_flag(name: &str) -> Option<u8> {
    Some(match name {
        "fin" => 0x01,
        "syn" => 0x02,
        "rst" | "reset" => 0x04,
        "push" | "psh" => 0x08,
        "ack" => 0x10,
        "urg" | "urgent" => 0x20,
        "ece" => 0x40,
        "cwr" => 0x80,
        _ => return None,
    })
}

fn fragment_bit(key: &str, name: &str) -> Result<u8, FlowspecError> {
    match name {
        "is-fragment" => Ok(FRAG_IS),
        "first-fragment" => Ok(FRAG_FIRST),
        "dont-fragment" | "last-fragment" => Err(bad(
            key,
            format!("`{name}` is not evaluated by scrubd (is-fragment and first-fragment are)"),
        )),
        _ => Err(bad(key, format!("unknown fragment flag `{name}`"))),
    }
}

/// Splits an element into its `&`-joined terms, keeping each term's operator.
fn and_terms(elem: &str) -> impl Iterator<Item = &str> {
    elem.split('&').map(str::trim).filter(|t| !t.is_empty())
}

/// A component's values, numeric or bitmask alike: each element an AND of `&`-joined terms,
/// each read by `term`; the first bad term is the error, and so is an empty element or list.
fn parse_any_of<T>(
    key: &str,
    elems: &[String],
    mut term: impl FnMut(&str) -> Result<T, FlowspecError>,
) -> Result<AnyOf<T>, FlowspecError> {
    let mut any = Vec::new();
    for e in elems {
        let and = and_terms(e).map(&mut term).collect::<Result<Vec<T>, _>>()?;
        if and.is_empty() {
            return Err(bad(key, "empty value"));
        }
        any.push(and);
    }
    if any.is_empty() {
        return Err(bad(key, "no value"));
    }
    Ok(AnyOf(any))
}

fn parse_numeric(
    key: &str,
    elems: &[String],
    max: u64,
    name: fn(&str) -> Option<u64>,
) -> Result<AnyOf<NumTerm>, FlowspecError> {
    parse_any_of(key, elems, |t| {
        let (lt, gt, eq, rest) = if let Some(r) = t.strip_prefix(">=") {
            (false, true, true, r)
        } else if let Some(r) = t.strip_prefix("<=") {
            (true, false, true, r)
        } else if let Some(r) = t.strip_prefix("!=") {
            (true, true, false, r)
        } else if let Some(r) = t.strip_prefix("==") {
            (false, false, true, r)
        } else if let Some(r) = t.strip_prefix('=') {
            (false, false, true, r)
        } else if let Some(r) = t.strip_prefix('>') {
            (false, true, false, r)
        } else if let Some(r) = t.strip_prefix('<') {
            (true, false, false, r)
        } else if t == "true" || t == "false" {
            return Err(bad(key, format!("operator `{t}` is not supported")));
        } else {
            (false, false, true, t)
        };
        let value = rest
            .parse::<u64>()
            .ok()
            .or_else(|| name(rest))
            .ok_or_else(|| bad(key, format!("`{t}` is not a comparison with a number")))?;
        if value > max {
            return Err(bad(key, format!("{value} is above {max}")));
        }
        Ok(NumTerm { lt, gt, eq, value })
    })
}

fn parse_bits(
    key: &str,
    elems: &[String],
    bit: &dyn Fn(&str) -> Result<u8, FlowspecError>,
) -> Result<AnyOf<BitTerm>, FlowspecError> {
    parse_any_of(key, elems, |t| {
        let (not, all, rest) = if let Some(r) = t.strip_prefix("!=") {
            (true, true, r)
        } else if let Some(r) = t.strip_prefix('!') {
            (true, false, r)
        } else if let Some(r) = t.strip_prefix('=') {
            (false, true, r)
        } else {
            (false, false, t)
        };
        // `not-a-fragment` is ExaBGP's spelling of `!is-fragment`.
        let (not, rest) = if rest == "not-a-fragment" {
            (!not, "is-fragment")
        } else {
            (not, rest)
        };
        let mut mask = 0u8;
        for name in rest.split('+').map(str::trim) {
            mask |= match name.parse::<u8>() {
                Ok(v) => v,
                Err(_) => bit(name)?,
            };
        }
        if mask == 0 {
            return Err(bad(key, format!("`{t}` names no flag")));
        }
        Ok(BitTerm { not, all, mask })
    })
}

fn parse_prefix(key: &str, elems: &[String], v6: bool) -> Result<Prefix, FlowspecError> {
    let [one] = elems else {
        return Err(bad(key, "exactly one prefix expected"));
    };
    let mut text = one.trim();
    if v6 {
        // RFC 8956 prefixes carry an offset: `2001:db8::/32/0`. Only offset 0 is evaluated.
        if let Some((p, off)) = text.rsplit_once('/').filter(|(p, _)| p.contains('/')) {
            if off != "0" {
                return Err(bad(key, format!("prefix offset {off} is not supported")));
            }
            text = p;
        }
    }
    let p: Prefix = text
        .parse()
        .map_err(|e| bad(key, format!("`{text}`: {e}")))?;
    if matches!(p.addr(), IpAddr::V6(_)) != v6 {
        return Err(bad(key, format!("`{text}` is the wrong address family")));
    }
    Ok(p)
}

impl FlowRule {
    /// One route: `components` by ExaBGP's names, each a list of OR-ed values whose
    /// `&`-joined terms are AND-ed; `action` from [`FlowAction::from_communities`].
    pub fn parse(
        components: &BTreeMap<String, Vec<String>>,
        action: FlowAction,
    ) -> Result<FlowRule, FlowspecError> {
        let mut r = FlowRule {
            dst: None,
            src: None,
            proto: None,
            port: None,
            dport: None,
            sport: None,
            len: None,
            tcp_flags: None,
            fragment: None,
            action,
            components: components.len(),
        };
        let mut family: Option<bool> = None;
        for (key, vals) in components {
            let v6 = key.ends_with("-ipv6");
            match key.as_str() {
                "destination-ipv4" | "destination-ipv6" | "destination" => {
                    r.dst = Some(parse_prefix(key, vals, v6)?);
                }
                "source-ipv4" | "source-ipv6" | "source" => {
                    r.src = Some(parse_prefix(key, vals, v6)?);
                }
                "protocol" | "next-header" => {
                    r.proto = Some(parse_numeric(key, vals, 255, protocol_number)?)
                }
                "port" => r.port = Some(parse_numeric(key, vals, 65535, |_| None)?),
                "destination-port" => r.dport = Some(parse_numeric(key, vals, 65535, |_| None)?),
                "source-port" => r.sport = Some(parse_numeric(key, vals, 65535, |_| None)?),
                "packet-length" => r.len = Some(parse_numeric(key, vals, 65535, |_| None)?),
                "tcp-flags" => {
                    r.tcp_flags = Some(parse_bits(key, vals, &|n| {
                        tcp_flag(n).ok_or_else(|| bad(key, format!("unknown TCP flag `{n}`")))
                    })?)
                }
                "fragment" => r.fragment = Some(parse_bits(key, vals, &|n| fragment_bit(key, n))?),
                other => return Err(FlowspecError::Unsupported(other.to_string())),
            }
            if key.starts_with("destination-ip") || key.starts_with("source-ip") {
                if family.is_some_and(|f| f != v6) {
                    return Err(bad(key, "destination and source of different families"));
                }
                family = Some(v6);
            }
        }
        if r.dst.is_none() && r.src.is_none() {
            return Err(FlowspecError::NoPrefix);
        }
        Ok(r)
    }

    /// Whether the packet matches every component.
    #[inline]
    fn matches(&self, ip: &IpHeaders) -> bool {
        if let Some(p) = &self.dst {
            if !p.contains(ip.dst) {
                return false;
            }
        }
        if let Some(p) = &self.src {
            if !p.contains(ip.src) {
                return false;
            }
        }
        if let Some(m) = &self.proto {
            if !m.test(u64::from(ip.proto)) {
                return false;
            }
        }
        if let Some(m) = &self.len {
            if !m.test(u64::from(ip.ip_len)) {
                return false;
            }
        }
        let (ports, flags) = match ip.transport {
            Transport::Tcp(t) => (Some((t.sport, t.dport)), Some(t.flags)),
            Transport::Udp { sport, dport } => (Some((sport, dport)), None),
            _ => (None, None),
        };
        if self.port.is_some() || self.dport.is_some() || self.sport.is_some() {
            // RFC 8955 §4.2.2.3: a packet without ports does not match a port component.
            let Some((sp, dp)) = ports else {
                return false;
            };
            if let Some(m) = &self.port {
                if !m.test(u64::from(sp)) && !m.test(u64::from(dp)) {
                    return false;
                }
            }
            if let Some(m) = &self.dport {
                if !m.test(u64::from(dp)) {
                    return false;
                }
            }
            if let Some(m) = &self.sport {
                if !m.test(u64::from(sp)) {
                    return false;
                }
            }
        }
        if let Some(m) = &self.tcp_flags {
            let Some(f) = flags else {
                return false;
            };
            if !m.test(f) {
                return false;
            }
        }
        if let Some(m) = &self.fragment {
            let bits = match ip.frag {
                Frag::None => 0,
                Frag::First => FRAG_IS | FRAG_FIRST,
                Frag::Later => FRAG_IS,
            };
            if !m.test(bits) {
                return false;
            }
        }
        true
    }

    /// Sort key of RFC 8955 §5.1's order, as far as scrubd's components go.
    fn precedence(&self) -> (u8, u8, usize) {
        (
            self.dst.map_or(0, |p| p.prefix_len() + 1),
            self.src.map_or(0, |p| p.prefix_len() + 1),
            self.components,
        )
    }
}

/// A rule's shared byte budget: whole bytes in `tokens`, refilled from the TSC.
struct Bucket {
    tokens: AtomicU64,
    /// TSC of the last credit; moves only by the time the credited bytes took, so frequent
    /// refills lose no fraction.
    last: AtomicU64,
    rate: u64,
    cap: u64,
}

const UNSTARTED: u64 = u64::MAX;

impl Bucket {
    fn new(rate: u64) -> Bucket {
        let cap = rate.max(9000);
        Bucket {
            tokens: AtomicU64::new(cap),
            last: AtomicU64::new(UNSTARTED),
            rate,
            cap,
        }
    }

    #[inline]
    fn admit(&self, bytes: u64, now: u64, hz: u64) -> bool {
        let last = self.last.load(Ordering::Acquire);
        if last == UNSTARTED {
            let _ = self
                .last
                .compare_exchange(UNSTARTED, now, Ordering::AcqRel, Ordering::Acquire);
        } else if now > last && self.rate > 0 && hz > 0 {
            let add = u128::from(now - last) * u128::from(self.rate) / u128::from(hz);
            if add > 0 {
                let used = (add * u128::from(hz) / u128::from(self.rate)) as u64;
                let add = add.min(u128::from(self.cap)) as u64;
                if self
                    .last
                    .compare_exchange(last, last + used, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let cap = self.cap;
                    let _ = self
                        .tokens
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                            Some(t.saturating_add(add).min(cap))
                        });
                }
            }
        }
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                t.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// The compiled rules every worker shares, in evaluation order.
pub struct FlowspecTable {
    rules: Box<[FlowRule]>,
    /// One per rule; used only by rate-limit rules.
    buckets: Box<[Bucket]>,
    tsc_hz: u64,
}

impl FlowspecTable {
    /// Orders `rules` (given in arrival order) and gives each rate limit its bucket.
    pub fn build(rules: Vec<FlowRule>, tsc_hz: u64) -> Result<FlowspecTable, FlowspecError> {
        if rules.len() > MAX_RULES {
            return Err(FlowspecError::Full);
        }
        let order = Self::order(&rules.iter().collect::<Vec<_>>());
        let mut slots: Vec<Option<FlowRule>> = rules.into_iter().map(Some).collect();
        let rules: Vec<FlowRule> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let buckets = rules
            .iter()
            .map(|r| match r.action {
                FlowAction::RateLimit(rate) => Bucket::new(rate),
                _ => Bucket::new(0),
            })
            .collect();
        Ok(FlowspecTable {
            rules: rules.into_boxed_slice(),
            buckets,
            tsc_hz,
        })
    }

    /// The evaluation order of `rules` (given in arrival order) as indices into it: RFC 8955
    /// §5.1's precedence, ties kept in arrival order.
    pub fn order(rules: &[&FlowRule]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..rules.len()).collect();
        idx.sort_by_key(|&i| std::cmp::Reverse(rules[i].precedence()));
        idx
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Per-worker counts of what the stage did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowspecCounters {
    pub discarded: u64,
    pub rate_passed: u64,
    pub rate_dropped: u64,
    pub accepted: u64,
    pub no_match: u64,
}

/// A worker's view of the shared table plus its own counters.
pub struct FlowspecStage {
    table: Arc<FlowspecTable>,
    pub counters: FlowspecCounters,
}

impl FlowspecStage {
    pub fn new(table: Arc<FlowspecTable>) -> FlowspecStage {
        FlowspecStage {
            table,
            counters: FlowspecCounters::default(),
        }
    }

    pub fn table(&self) -> &Arc<FlowspecTable> {
        &self.table
    }

    /// Swaps the table (between bursts), keeping the counters.
    pub fn set_table(&mut self, t: Arc<FlowspecTable>) {
        self.table = t;
    }

    #[inline]
    pub fn process(&mut self, hdr: &Headers, meta: &Meta) -> StageResult {
        let Some(ip) = hdr.ip() else {
            return StageResult::Continue;
        };
        let t = &*self.table;
        let Some(i) = t.rules.iter().position(|r| r.matches(ip)) else {
            self.counters.no_match += 1;
            return StageResult::Continue;
        };
        match t.rules[i].action {
            FlowAction::Discard => {
                self.counters.discarded += 1;
                StageResult::Done(Verdict::Drop(DropReason::FlowspecDiscard))
            }
            FlowAction::Accept => {
                self.counters.accepted += 1;
                StageResult::Continue
            }
            FlowAction::RateLimit(_) => {
                if t.buckets[i].admit(u64::from(ip.ip_len), meta.tsc, t.tsc_hz) {
                    self.counters.rate_passed += 1;
                    StageResult::Continue
                } else {
                    self.counters.rate_dropped += 1;
                    StageResult::Done(Verdict::Drop(DropReason::FlowspecRateLimited))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse::parse;

    fn comps(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, &vec![0u8; n])
            .unwrap();
        v
    }

    fn tcp(dst: [u8; 4], dport: u16, syn: bool, ack: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 1], dst, 64)
            .tcp(40000, dport, 1, 64240);
        let b = if syn { b.syn() } else { b };
        let b = if ack { b.ack(5) } else { b };
        b.write(&mut v, &[]).unwrap();
        v
    }

    fn stage(rules: Vec<FlowRule>) -> FlowspecStage {
        FlowspecStage::new(Arc::new(FlowspecTable::build(rules, 1000).unwrap()))
    }

    fn judge(s: &mut FlowspecStage, f: &[u8], tsc: u64) -> StageResult {
        let h = parse(f).unwrap();
        s.process(
            &h,
            &Meta {
                tsc,
                ..Meta::default()
            },
        )
    }

    const DROP: StageResult = StageResult::Done(Verdict::Drop(DropReason::FlowspecDiscard));
    const PASS: StageResult = StageResult::Continue;

    /// A rule from its components (as ExaBGP names them) that must parse.
    fn rule(list: &[(&str, &[&str])], action: FlowAction) -> FlowRule {
        FlowRule::parse(&comps(list), action).unwrap()
    }

    /// A stage with one discard rule of these components.
    fn discard_stage(list: &[(&str, &[&str])]) -> FlowspecStage {
        stage(vec![rule(list, FlowAction::Discard)])
    }

    #[test]
    fn discard_matches_every_component() {
        let mut s = discard_stage(&[
            ("destination-ipv4", &["10.0.0.0/24"]),
            ("source-ipv4", &["198.51.100.0/24"]),
            ("protocol", &["=udp"]),
            ("destination-port", &["=53", ">=1000&<=1010"]),
            ("packet-length", &[">100"]),
        ]);
        let src = [198, 51, 100, 7];
        assert_eq!(judge(&mut s, &udp(src, [10, 0, 0, 1], 9, 53, 200), 0), DROP);
        assert_eq!(
            judge(&mut s, &udp(src, [10, 0, 0, 1], 9, 1005, 200), 0),
            DROP
        );
        for miss in [
            udp(src, [10, 0, 0, 1], 9, 1011, 200),
            udp(src, [10, 0, 1, 1], 9, 53, 200),
            udp([198, 51, 101, 7], [10, 0, 0, 1], 9, 53, 200),
            udp(src, [10, 0, 0, 1], 9, 53, 10),
            tcp([10, 0, 0, 1], 53, true, false),
        ] {
            assert_eq!(judge(&mut s, &miss, 0), PASS);
        }
        assert_eq!(s.counters.discarded, 2);
        assert_eq!(s.counters.no_match, 5);
    }

    #[test]
    fn tcp_flags_match_and_not() {
        let mut s = discard_stage(&[
            ("destination-ipv4", &["10.0.0.5/32"]),
            ("tcp-flags", &["=syn&!ack"]),
        ]);
        assert_eq!(judge(&mut s, &tcp([10, 0, 0, 5], 80, true, false), 0), DROP);
        assert_eq!(judge(&mut s, &tcp([10, 0, 0, 5], 80, true, true), 0), PASS);
        assert_eq!(
            judge(&mut s, &udp([1, 1, 1, 1], [10, 0, 0, 5], 1, 2, 0), 0),
            PASS,
            "no TCP flags: no match"
        );
    }

    #[test]
    fn more_specific_destination_wins_and_accept_continues() {
        let wide = rule(
            &[("destination-ipv4", &["10.0.0.0/8"])],
            FlowAction::Discard,
        );
        let narrow = rule(
            &[("destination-ipv4", &["10.1.0.0/16"])],
            FlowAction::Accept,
        );
        let mut s = stage(vec![wide, narrow]);
        let f = udp([1, 1, 1, 1], [10, 1, 2, 3], 1, 2, 0);
        assert_eq!(judge(&mut s, &f, 0), PASS);
        assert_eq!(s.counters.accepted, 1);
        assert_eq!(
            judge(&mut s, &udp([1, 1, 1, 1], [10, 2, 2, 3], 1, 2, 0), 0),
            DROP
        );
    }

    #[test]
    fn rate_limit_is_bytes_per_second() {
        let r = rule(
            &[("destination-ipv4", &["10.0.0.0/24"])],
            FlowAction::RateLimit(10_000),
        );
        // tsc_hz 1000: one tick is a millisecond.
        let mut s = stage(vec![r]);
        let f = udp([1, 1, 1, 1], [10, 0, 0, 1], 1, 2, 972); // 1000-byte IP packet
        let passed = (0..20).filter(|_| judge(&mut s, &f, 5) == PASS).count();
        assert_eq!(passed, 10, "a burst of one second at 10 kB/s");
        // 100 ms later: 1000 bytes more.
        assert_eq!(judge(&mut s, &f, 105), PASS);
        assert_eq!(
            judge(&mut s, &f, 105),
            StageResult::Done(Verdict::Drop(DropReason::FlowspecRateLimited))
        );
        assert_eq!(s.counters.rate_passed, 11);
    }

    #[test]
    fn what_cannot_be_expressed_is_refused() {
        let d = ("destination-ipv4", &["10.0.0.0/24"][..]);
        for (c, want) in [
            (comps(&[d, ("dscp", &["=10"])]), "dscp"),
            (
                comps(&[d, ("fragment", &["dont-fragment"])]),
                "dont-fragment",
            ),
            (comps(&[d, ("destination-port", &["=70000"])]), "above"),
            (comps(&[d, ("destination-port", &["true"])]), "true"),
            (comps(&[d, ("tcp-flags", &["=bogus"])]), "bogus"),
            (
                comps(&[("destination-ipv4", &["10.0.0.1/24"])]),
                "host bits",
            ),
            (comps(&[("protocol", &["=udp"])]), "without destination"),
            (
                comps(&[("destination-ipv6", &["2001:db8::/32/8"])]),
                "offset",
            ),
        ] {
            let e = FlowRule::parse(&c, FlowAction::Discard)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{c:?}: {e}");
        }
        assert!(FlowRule::parse(
            &comps(&[("destination-ipv6", &["2001:db8::/32/0"])]),
            FlowAction::Discard
        )
        .is_ok());
    }

    #[test]
    fn actions_from_communities() {
        let a = |l: &[&str]| {
            FlowAction::from_communities(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(a(&[]), Ok(FlowAction::Accept));
        assert_eq!(a(&["rate-limit:0"]), Ok(FlowAction::Discard));
        assert_eq!(a(&["rate-limit:12500"]), Ok(FlowAction::RateLimit(12500)));
        assert_eq!(a(&["target:65000:1"]), Ok(FlowAction::Accept));
        assert!(a(&["redirect:65000:1"]).is_err());
        assert!(a(&["rate-limit:-1"]).is_err());
    }

    #[test]
    fn ipv6_prefixes_with_offset_zero() {
        // The components as ExaBGP prints an IPv6 route (prefix/length/offset).
        let mut s = discard_stage(&[
            ("destination-ipv6", &["2001:db8:1::/48/0"]),
            ("source-ipv6", &["2001:db8:2::/64/0"]),
            ("next-header", &["=udp"]),
            ("destination-port", &["=53"]),
        ]);
        let frame = |dst: [u16; 8]| {
            let mut v = Vec::new();
            let a = |x: [u16; 8]| {
                let mut o = [0u8; 16];
                for (i, w) in x.iter().enumerate() {
                    o[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
                }
                o
            };
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv6(a([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]), a(dst), 64)
                .udp(40000, 53)
                .write(&mut v, b"q")
                .unwrap();
            v
        };
        assert_eq!(
            judge(&mut s, &frame([0x2001, 0xdb8, 1, 5, 0, 0, 0, 1]), 0),
            DROP
        );
        assert_eq!(
            judge(&mut s, &frame([0x2001, 0xdb8, 9, 5, 0, 0, 0, 1]), 0),
            PASS
        );
        let mixed = comps(&[
            ("destination-ipv4", &["10.0.0.0/8"]),
            ("source-ipv6", &["2001:db8::/32/0"]),
        ]);
        assert!(FlowRule::parse(&mixed, FlowAction::Discard).is_err());
    }

    #[test]
    fn fragments() {
        let mut s = discard_stage(&[
            ("destination-ipv4", &["10.0.0.0/24"]),
            ("fragment", &["not-a-fragment"]),
        ]);
        assert_eq!(
            judge(&mut s, &udp([1, 1, 1, 1], [10, 0, 0, 1], 1, 2, 0), 0),
            DROP
        );
    }
}
