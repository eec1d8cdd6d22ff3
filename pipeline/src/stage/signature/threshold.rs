//! `threshold` / `detection_filter` state: per worker, a fixed table of counting windows keyed
//! by (rule, tracked address). It is the rate-limit idea applied per rule with Suricata's
//! counting semantics (a window opens at the first match and lasts `seconds`), rather than the
//! token buckets of the rate-limit stage, whose refill cannot express "the first N" or "every
//! Nth". The table is direct-mapped and sized at construction: a collision replaces the older
//! window (the new key starts counting afresh), so memory and time stay bounded under floods
//! of distinct sources; keys are hashed with a per-worker random SipHash key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::keywords::{Threshold, ThresholdKind, Track};

/// TSC ticks per second for windows. Set by the policy builder (which knows the TSC rate)
/// before it builds workers; the default suits tests and `--check`, where no window is timed.
static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);

/// Sets the clock rate the next signature stages use for threshold windows.
pub fn set_tsc_hz(hz: u64) {
    if hz > 0 {
        TSC_HZ.store(hz, Ordering::Relaxed);
    }
}

/// Windows per worker (a power of two).
pub(crate) const SLOTS: usize = 1 << 14;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: u64,
    start: u64,
    count: u32,
}

#[derive(Debug)]
pub(crate) struct Windows {
    slots: Vec<Slot>,
    hasher: RandomState,
    tsc_hz: u64,
}

impl Windows {
    pub fn new() -> Self {
        Windows {
            slots: vec![Slot::default(); SLOTS],
            hasher: RandomState::new(),
            tsc_hz: TSC_HZ.load(Ordering::Relaxed),
        }
    }

    /// Counts one match of `rule` and says whether it fires now.
    pub fn fire(&mut self, rule: u32, t: &Threshold, src: IpAddr, dst: IpAddr, now: u64) -> bool {
        let key = match t.track {
            Track::BySrc => self.hasher.hash_one((rule, src)),
            Track::ByDst => self.hasher.hash_one((rule, dst)),
            Track::ByRule => self.hasher.hash_one(rule),
            Track::ByBoth => self.hasher.hash_one((rule, src, dst)),
        }
        .max(1); // 0 marks an empty slot
        let i = (key as usize) & (SLOTS - 1);
        let len = self.tsc_hz.saturating_mul(u64::from(t.seconds));
        let Some(s) = self.slots.get_mut(i) else {
            return false;
        };
        if s.key != key || now.wrapping_sub(s.start) >= len {
            *s = Slot {
                key,
                start: now,
                count: 0,
            };
        }
        s.count = s.count.saturating_add(1);
        match t.kind {
            ThresholdKind::Limit => s.count <= t.count,
            ThresholdKind::Threshold => {
                if s.count >= t.count {
                    s.count = 0;
                    true
                } else {
                    false
                }
            }
            ThresholdKind::Both => s.count == t.count,
            ThresholdKind::DetectionFilter => s.count > t.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(kind: ThresholdKind, count: u32, times: &[u64]) -> Vec<bool> {
        let mut w = Windows::new();
        w.tsc_hz = 1000;
        let t = Threshold {
            kind,
            track: Track::BySrc,
            count,
            seconds: 1,
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        times.iter().map(|&now| w.fire(7, &t, a, a, now)).collect()
    }

    #[test]
    fn suricata_counting_semantics() {
        let t = [0, 1, 2, 3, 4, 1000, 1001];
        assert_eq!(
            fires(ThresholdKind::Limit, 2, &t),
            [true, true, false, false, false, true, true]
        );
        assert_eq!(
            fires(ThresholdKind::Threshold, 2, &t),
            [false, true, false, true, false, false, true]
        );
        assert_eq!(
            fires(ThresholdKind::Both, 2, &t),
            [false, true, false, false, false, false, true]
        );
        assert_eq!(
            fires(ThresholdKind::DetectionFilter, 2, &t),
            [false, false, true, true, true, false, false]
        );
    }

    #[test]
    fn sources_are_tracked_apart() {
        let mut w = Windows::new();
        let t = Threshold {
            kind: ThresholdKind::Limit,
            track: Track::BySrc,
            count: 1,
            seconds: 60,
        };
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(w.fire(1, &t, a, b, 0));
        assert!(!w.fire(1, &t, a, b, 1));
        assert!(w.fire(1, &t, b, a, 2));
        assert!(w.fire(2, &t, a, b, 3), "another rule has its own window");
    }
}
