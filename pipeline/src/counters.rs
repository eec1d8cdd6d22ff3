//! Flat counter tables for verdicts, so a worker can count with one array increment and the
//! control side can sum snapshots slot by slot.

use crate::stage::ratelimit::LimitClass;
use crate::verdict::{DropReason, Malformed, Verdict};

/// One slot per rate-limit class, in the class's own index order.
pub const RATE_CLASSES: usize = LimitClass::COUNT;

const FIXED: [&str; 8] = [
    "acl_deny",
    "unauthenticated",
    "cookie_invalid",
    "auth_handshake",
    "signature",
    "unsupported_ethertype",
    "flowspec_discard",
    "flowspec_rate_limited",
];

/// Index of the first slot after the malformed sub-reasons.
const BASE: usize = Malformed::COUNT;
const RATE_BASE: usize = BASE + FIXED.len();
/// Drops that happen in the data path rather than in a stage get the slots after the
/// pipeline's own: the TX ring was full for a forwarded packet, a reply did not fit the buffer
/// it was built in, or the TX ring was full for a reply. The last is apart from `tx_full` so
/// that a stage's count of replies it built (`syncookie.syn_answered`) can be told from what
/// left: replies sent = built - `reply_failed` - `reply_tx_full`.
pub const TX_FULL_SLOT: usize = RATE_BASE + RATE_CLASSES;
pub const REPLY_FAILED_SLOT: usize = TX_FULL_SLOT + 1;
pub const REPLY_TX_FULL_SLOT: usize = REPLY_FAILED_SLOT + 1;
/// Number of drop-reason slots in a [`VerdictCounters`] table.
pub const DROP_SLOTS: usize = REPLY_TX_FULL_SLOT + 1;

impl DropReason {
    /// Position of this reason in a flat counter table. Signature drops share one slot here;
    /// per-rule counts live in the signature stage.
    pub fn slot(self) -> usize {
        match self {
            DropReason::Malformed(m) => m.index(),
            DropReason::AclDeny => BASE,
            DropReason::Unauthenticated => BASE + 1,
            DropReason::CookieInvalid => BASE + 2,
            DropReason::AuthHandshake => BASE + 3,
            DropReason::Signature(_) => BASE + 4,
            DropReason::UnsupportedEthertype => BASE + 5,
            DropReason::FlowspecDiscard => BASE + 6,
            DropReason::FlowspecRateLimited => BASE + 7,
            DropReason::RateLimited(c) => RATE_BASE + (usize::from(c.index()) % RATE_CLASSES),
        }
    }
}

/// Name of a drop slot for reports ("malformed.ipv4_bad_checksum", "rate_limited.3", ...).
pub fn slot_name(slot: usize) -> String {
    if slot < BASE {
        format!("malformed.{}", Malformed::ALL[slot].name())
    } else if slot < RATE_BASE {
        FIXED[slot - BASE].to_string()
    } else if slot < TX_FULL_SLOT {
        let class = LimitClass::ALL[slot - RATE_BASE];
        format!("rate_limited.{}", class.name())
    } else if slot == TX_FULL_SLOT {
        "tx_full".to_string()
    } else if slot == REPLY_FAILED_SLOT {
        "reply_failed".to_string()
    } else if slot == REPLY_TX_FULL_SLOT {
        "reply_tx_full".to_string()
    } else {
        format!("unknown.{slot}")
    }
}

/// Verdict counts for one port (or one worker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub forwarded: u64,
    pub replied: u64,
    pub drops: [u64; DROP_SLOTS],
}

impl Default for VerdictCounters {
    fn default() -> Self {
        VerdictCounters {
            rx_packets: 0,
            rx_bytes: 0,
            forwarded: 0,
            replied: 0,
            drops: [0; DROP_SLOTS],
        }
    }
}

impl VerdictCounters {
    #[inline]
    pub fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Forward => self.forwarded += 1,
            Verdict::Reply { .. } => self.replied += 1,
            Verdict::Drop(r) => self.drops[r.slot()] += 1,
        }
    }

    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// rx = forwarded + replied + Σ drops: the invariant every test checks.
    pub fn conserved(&self) -> bool {
        self.rx_packets == self.forwarded + self.replied + self.dropped()
    }

    pub fn add(&mut self, o: &VerdictCounters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.forwarded += o.forwarded;
        self.replied += o.replied;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
    }

    /// Non-zero drop slots with their names, for reports.
    pub fn drop_breakdown(&self) -> Vec<(String, u64)> {
        self.drops
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (slot_name(i), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_named() {
        let mut reasons: Vec<DropReason> = Malformed::ALL
            .iter()
            .map(|&m| DropReason::Malformed(m))
            .collect();
        reasons.extend([
            DropReason::AclDeny,
            DropReason::Unauthenticated,
            DropReason::CookieInvalid,
            DropReason::AuthHandshake,
            DropReason::Signature(7),
            DropReason::UnsupportedEthertype,
            DropReason::FlowspecDiscard,
            DropReason::FlowspecRateLimited,
        ]);
        reasons.extend(LimitClass::ALL.map(DropReason::RateLimited));
        let mut slots: Vec<usize> = reasons.iter().map(|r| r.slot()).collect();
        slots.push(TX_FULL_SLOT);
        slots.push(REPLY_FAILED_SLOT);
        slots.push(REPLY_TX_FULL_SLOT);
        let n = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), n);
        assert_eq!(n, DROP_SLOTS);
        let names: std::collections::HashSet<String> = (0..DROP_SLOTS).map(slot_name).collect();
        assert_eq!(names.len(), DROP_SLOTS);
        assert!(!names.iter().any(|n| n.starts_with("unknown")));
    }

    #[test]
    fn conservation_counts_every_verdict() {
        let mut c = VerdictCounters::default();
        for v in [
            Verdict::Forward,
            Verdict::Reply { len: 60 },
            Verdict::Drop(DropReason::AclDeny),
            Verdict::Drop(DropReason::RateLimited(LimitClass::TcpSyn)),
        ] {
            c.rx_packets += 1;
            c.count(v);
        }
        assert!(c.conserved());
        c.rx_packets += 1;
        assert!(!c.conserved());
        assert_eq!(
            c.drop_breakdown(),
            vec![("acl_deny".into(), 1), ("rate_limited.tcp_syn".into(), 1)]
        );
    }
}
