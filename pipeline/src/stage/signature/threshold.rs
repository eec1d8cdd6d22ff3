//! `threshold` / `detection_filter` state: one table of counting windows keyed by (rule,
//! tracked address), shared by every worker of a rule set, so a source's count is the box's,
//! not one worker's (RSS spreads a source's flows over every queue).
//!
//! It is the rate-limit idea applied per rule with Suricata's counting semantics (a window
//! opens at the first match and lasts `seconds`), rather than the token buckets of the
//! rate-limit stage, whose refill cannot express "the first N" or "every Nth". The table is
//! direct-mapped and sized at construction (a single slot when no rule has a threshold): a
//! collision replaces the older window (the new key starts counting afresh), so memory and
//! time stay bounded under floods of distinct sources; keys are hashed with a random key.
//!
//! A slot is two atomics: the key, and the window packed as start (milliseconds of TSC time,
//! 40 bits: 34 years) and count (24 bits, saturating). Counting is a compare-exchange loop, so
//! concurrent matches on several workers are each counted once. Replacing a slot's key and
//! opening its window are two stores; a match on another worker in between counts against the
//! new key's fresh window or is lost to it, which only matters on the (already approximate)
//! collision path.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::keywords::{Threshold, ThresholdKind, Track};

/// The clock rate rule sets are compiled for when no TSC rate is given (tests, `--check`):
/// one tick per nanosecond.
pub const DEFAULT_TSC_HZ: u64 = 1_000_000_000;

/// Windows of a rule set that has threshold rules (a power of two).
pub(crate) const SLOTS: usize = 1 << 14;

const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

#[derive(Debug, Default)]
struct Slot {
    /// 0 = empty.
    key: AtomicU64,
    /// start_ms << 24 | count.
    window: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Windows {
    slots: Box<[Slot]>,
    hasher: RandomState,
    ticks_per_ms: u64,
}

impl Windows {
    /// A table for a rule set; `needed` is whether any of its rules has a threshold;
    /// `tsc_hz` is the rate of the clock packets are stamped with (`Meta::tsc`).
    pub fn new(needed: bool, tsc_hz: u64) -> Self {
        let n = if needed { SLOTS } else { 1 };
        Windows {
            slots: (0..n).map(|_| Slot::default()).collect(),
            hasher: RandomState::new(),
            ticks_per_ms: (tsc_hz / 1000).max(1),
        }
    }

    /// Counts one match of `rule` and says whether it fires now.
    pub fn fire(&self, rule: u32, t: &Threshold, src: IpAddr, dst: IpAddr, now: u64) -> bool {
        let key = match t.track {
            Track::BySrc => self.hasher.hash_one((rule, src)),
            Track::ByDst => self.hasher.hash_one((rule, dst)),
            Track::ByRule => self.hasher.hash_one(rule),
            Track::ByBoth => self.hasher.hash_one((rule, src, dst)),
        }
        .max(1);
        let i = (key as usize) & (self.slots.len() - 1);
        let Some(s) = self.slots.get(i) else {
            return false;
        };
        let now_ms = (now / self.ticks_per_ms) & ((1 << (64 - COUNT_BITS)) - 1);
        let len_ms = u64::from(t.seconds).saturating_mul(1000);
        let held = s.key.load(Ordering::Relaxed);
        if held != key
            && s.key
                .compare_exchange(held, key, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            s.window.store(now_ms << COUNT_BITS, Ordering::Relaxed);
        }
        let mut cur = s.window.load(Ordering::Relaxed);
        loop {
            let (start, count) = (cur >> COUNT_BITS, cur & COUNT_MAX);
            let (start, count) =
                if now_ms.wrapping_sub(start) & ((1 << (64 - COUNT_BITS)) - 1) >= len_ms {
                    (now_ms, 0)
                } else {
                    (start, count)
                };
            let count = (count + 1).min(COUNT_MAX);
            let limit = u64::from(t.count);
            let (fires, keep) = match t.kind {
                ThresholdKind::Limit => (count <= limit, count),
                ThresholdKind::Threshold if count >= limit => (true, 0),
                ThresholdKind::Threshold => (false, count),
                ThresholdKind::Both => (count == limit, count),
                ThresholdKind::DetectionFilter => (count > limit, count),
            };
            let next = (start << COUNT_BITS) | keep;
            match s
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return fires,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fires(kind: ThresholdKind, count: u32, times: &[u64]) -> Vec<bool> {
        // A 1 kHz clock: one tick per millisecond.
        fires_at(1_000, kind, count, times)
    }

    fn fires_at(tsc_hz: u64, kind: ThresholdKind, count: u32, times: &[u64]) -> Vec<bool> {
        let w = Windows::new(true, tsc_hz);
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

    /// Windows count in the ticks of the clock the rule set was compiled for: with a 3 GHz
    /// TSC a one-second window ends after 3e9 ticks, not after 1e9.
    #[test]
    fn windows_follow_the_compile_time_clock() {
        let t = [0, 1_500_000_000, 2_900_000_000, 3_000_000_001];
        assert_eq!(
            fires_at(3_000_000_000, ThresholdKind::Limit, 1, &t),
            [true, false, false, true]
        );
        // At 1 GHz the same stamps are 0, 1.5, 2.9 and 3.0 s: three windows, the last hit
        // inside the third.
        assert_eq!(
            fires_at(DEFAULT_TSC_HZ, ThresholdKind::Limit, 1, &t),
            [true, true, true, false]
        );
    }

    #[test]
    fn sources_are_tracked_apart() {
        let w = Windows::new(true, DEFAULT_TSC_HZ);
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

    #[test]
    fn workers_count_into_one_window() {
        // Four threads (workers) each see 25 matches of one source inside the window: with a
        // limit of 10, exactly 10 of the 100 fire, whichever worker they came through.
        let w = std::sync::Arc::new(Windows::new(true, DEFAULT_TSC_HZ));
        let t = Threshold {
            kind: ThresholdKind::Limit,
            track: Track::BySrc,
            count: 10,
            seconds: 60,
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let w = std::sync::Arc::clone(&w);
                std::thread::spawn(move || (0..25).filter(|i| w.fire(3, &t, a, a, *i)).count())
            })
            .collect();
        let fired: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(fired, 10);
    }
}
