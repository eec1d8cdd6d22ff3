//! The stage counters' schema: which counters exist, in which order, under which names.
//!
//! Workers publish their stage counters as a flat `[u64]` into preallocated snapshot buffers
//! (no allocation, whatever stages a reload adds or removes), so the layout is fixed for the
//! process: every stage's counters, in stage order, absent stages as zeros. This module is
//! the one place that layout is defined. Reports take the names from it and group counters by
//! their [`StageKind`], never by parsing names.

use crate::stage::acl::AclCounters;
use crate::stage::flowspec::FlowspecCounters;
use crate::stage::ratelimit::{LimitClass, RateLimitCounters};
use crate::stage::syncookie::Counters as SynCookieCounters;
use std::sync::OnceLock;

/// The stage a counter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageKind {
    Acl,
    SynCookie,
    RateLimit,
    Flowspec,
}

impl StageKind {
    pub const ALL: [StageKind; 4] = [
        StageKind::Acl,
        StageKind::SynCookie,
        StageKind::RateLimit,
        StageKind::Flowspec,
    ];

    /// The prefix of its counters' names (`acl`, `syncookie`, `ratelimit`), as in the config.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Acl => "acl",
            StageKind::SynCookie => "syncookie",
            StageKind::RateLimit => "ratelimit",
            StageKind::Flowspec => "flowspec",
        }
    }

    /// Where this stage's counters start in the flat layout, and how many there are.
    pub fn range(self) -> std::ops::Range<usize> {
        let (acl, sc, rl) = (ACL.len(), SYNCOOKIE.len(), ratelimit_len());
        let fs = acl + sc + rl;
        match self {
            StageKind::Acl => 0..acl,
            StageKind::SynCookie => acl..acl + sc,
            StageKind::RateLimit => acl + sc..fs,
            StageKind::Flowspec => fs..fs + FLOWSPEC.len(),
        }
    }
}

/// One counter of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageCounter {
    pub stage: StageKind,
    /// Its report name, `<stage>.<counter>` (e.g. `syncookie.syn_answered`).
    pub name: String,
}

const ACL: [&str; 5] = [
    "allowed_src",
    "allowed_dst",
    "denied_src",
    "denied_dst",
    "no_match",
];

const SYNCOOKIE: [&str; 23] = [
    "syn_answered",
    "auth_fallback_classic",
    "rst_validated",
    "ack_validated",
    "cookie_invalid",
    "unauthenticated",
    "allowlist_hits",
    "allowlist_evictions",
    "rotations",
    "outbound_tracked",
    "outbound_return",
    "proxy_opened",
    "proxy_established",
    "proxy_closed",
    "proxy_idle_expired",
    "proxy_full_auth",
    "proxy_full_reset",
    "proxy_emitted",
    "proxy_emit_failed",
    "proxy_syn_resent",
    "proxy_unexpected",
    "proxy_active",
    "proxy_capacity",
];

const RATELIMIT: [&str; 4] = [
    "unlimited",
    "table_inserts",
    "table_evictions",
    "table_evictions_active",
];

const FLOWSPEC: [&str; 5] = [
    "discarded",
    "rate_passed",
    "rate_dropped",
    "accepted",
    "no_match",
];

const fn ratelimit_len() -> usize {
    RATELIMIT.len() + 2 * LimitClass::COUNT
}

/// Number of stage counters in the layout.
pub const COUNT: usize = ACL.len() + SYNCOOKIE.len() + ratelimit_len() + FLOWSPEC.len();

/// The whole layout, built once.
pub fn schema() -> &'static [StageCounter] {
    static SCHEMA: OnceLock<Vec<StageCounter>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut v = Vec::with_capacity(COUNT);
        let mut push = |stage: StageKind, name: &str| {
            v.push(StageCounter {
                stage,
                name: format!("{}.{name}", stage.name()),
            })
        };
        for n in ACL {
            push(StageKind::Acl, n);
        }
        for n in SYNCOOKIE {
            push(StageKind::SynCookie, n);
        }
        for n in RATELIMIT {
            push(StageKind::RateLimit, n);
        }
        for class in LimitClass::ALL {
            push(StageKind::RateLimit, &format!("{}.passed", class.name()));
            push(StageKind::RateLimit, &format!("{}.dropped", class.name()));
        }
        for n in FLOWSPEC {
            push(StageKind::Flowspec, n);
        }
        v
    })
}

/// The ACL stage's counters in layout order.
pub(crate) fn acl_values(c: &AclCounters) -> [u64; ACL.len()] {
    [
        c.allowed_src,
        c.allowed_dst,
        c.denied_src,
        c.denied_dst,
        c.no_match,
    ]
}

/// The SYN-cookie stage's counters in layout order.
pub(crate) fn syncookie_values(c: &SynCookieCounters) -> [u64; SYNCOOKIE.len()] {
    [
        c.syn_answered,
        c.auth_fallback_classic,
        c.rst_validated,
        c.ack_validated,
        c.cookie_invalid,
        c.unauthenticated,
        c.allowlist_hits,
        c.allowlist_evictions,
        c.rotations,
        c.outbound_tracked,
        c.outbound_return,
        c.proxy_opened,
        c.proxy_established,
        c.proxy_closed,
        c.proxy_idle_expired,
        c.proxy_full_auth,
        c.proxy_full_reset,
        c.proxy_emitted,
        c.proxy_emit_failed,
        c.proxy_syn_resent,
        c.proxy_unexpected,
        c.proxy_active,
        c.proxy_capacity,
    ]
}

/// The FlowSpec stage's counters in layout order.
pub(crate) fn flowspec_values(c: &FlowspecCounters) -> [u64; FLOWSPEC.len()] {
    [
        c.discarded,
        c.rate_passed,
        c.rate_dropped,
        c.accepted,
        c.no_match,
    ]
}

/// The rate-limit stage's counters in layout order.
pub(crate) fn ratelimit_values(c: &RateLimitCounters) -> [u64; ratelimit_len()] {
    let mut out = [0u64; ratelimit_len()];
    out[..RATELIMIT.len()].copy_from_slice(&[
        c.unlimited,
        c.table_inserts,
        c.table_evictions,
        c.table_evictions_active,
    ]);
    for class in LimitClass::ALL {
        let i = usize::from(class.index());
        let at = RATELIMIT.len() + 2 * i;
        if let (Some(p), Some(d)) = (c.passed.get(i), c.dropped.get(i)) {
            out[at] = *p;
            out[at + 1] = *d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_schema_and_names_match_their_stage() {
        let s = schema();
        assert_eq!(s.len(), COUNT);
        let mut end = 0;
        for k in StageKind::ALL {
            let r = k.range();
            assert_eq!(r.start, end);
            end = r.end;
            for c in &s[r] {
                assert_eq!(c.stage, k);
                assert!(c.name.starts_with(&format!("{}.", k.name())), "{}", c.name);
            }
        }
        assert_eq!(end, COUNT);
        let mut names: Vec<&str> = s.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COUNT, "names are unique");
    }
}
