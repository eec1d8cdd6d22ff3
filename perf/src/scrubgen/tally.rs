//! Per-class counts and what they mean: false pass, false drop, latency.

use super::{Class, Expect, CLASSES};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded, in ns (larger values are clamped to it): 10 s.
const MAX_LATENCY_NS: u64 = 10_000_000_000;

/// One worker's counts (or the sum of all). Counting is plain adds into fixed arrays and a
/// histogram sized up front: nothing allocates while the generator runs.
pub struct Tally {
    pub sent: [u64; CLASSES],
    pub passed: [u64; CLASSES],
    pub answered: [u64; CLASSES],
    /// Frames on the inside port without a tag or table entry (e.g. replayed captures).
    pub untagged_inside: u64,
    pub untagged_outside: u64,
    /// SYNs / SYN-ACKs whose client had left the side table.
    pub untracked: u64,
    /// Frames built but not sent because the run ended before the TX ring took them.
    pub unsent: u64,
    /// Latency (ns) of every passed or answered packet with a TSC stamp.
    pub latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            sent: [0; CLASSES],
            passed: [0; CLASSES],
            answered: [0; CLASSES],
            untagged_inside: 0,
            untagged_outside: 0,
            untracked: 0,
            unsent: 0,
            // 3 significant digits up to 10 s: a fixed ~200 KiB, never resized.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.latency.record(ns.clamp(1, MAX_LATENCY_NS));
    }

    pub fn add(&mut self, o: &Tally) {
        for i in 0..CLASSES {
            self.sent[i] += o.sent[i];
            self.passed[i] += o.passed[i];
            self.answered[i] += o.answered[i];
        }
        self.untagged_inside += o.untagged_inside;
        self.untagged_outside += o.untagged_outside;
        self.untracked += o.untracked;
        self.unsent += o.unsent;
        // Same bounds on both sides: cannot fail.
        let _ = self.latency.add(&o.latency);
    }

    /// Per-class figures, for classes that sent something.
    pub fn classes(&self) -> Vec<ClassCounts> {
        Class::ALL
            .iter()
            .filter(|c| self.sent[c.id() as usize] > 0)
            .map(|&c| {
                let i = c.id() as usize;
                let (sent, passed, answered) = (self.sent[i], self.passed[i], self.answered[i]);
                let lost = sent.saturating_sub(passed + answered);
                let (false_pass, false_drop) = match c.expect() {
                    Expect::Drop | Expect::Answer if c.is_attack() => (passed, 0),
                    Expect::Pass => (0, sent.saturating_sub(passed)),
                    Expect::AnswerOrPass => (0, lost),
                    _ => (0, 0),
                };
                ClassCounts {
                    class: c,
                    expect: c.expect(),
                    sent,
                    passed,
                    answered,
                    dropped: lost,
                    false_pass,
                    false_drop,
                    unanswered: if c.expect() == Expect::Answer {
                        lost
                    } else {
                        0
                    },
                }
            })
            .collect()
    }

    pub fn false_pass(&self) -> u64 {
        self.classes().iter().map(|c| c.false_pass).sum()
    }

    pub fn false_drop(&self) -> u64 {
        self.classes().iter().map(|c| c.false_drop).sum()
    }

    pub fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn total_passed(&self) -> u64 {
        self.passed.iter().sum::<u64>() + self.untagged_inside
    }

    pub fn total_answered(&self) -> u64 {
        self.answered.iter().sum::<u64>() + self.untagged_outside
    }

    /// Latency percentile `q` (0..=100) in ns; 0 without samples.
    pub fn latency_ns(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            0
        } else {
            self.latency.value_at_quantile(q / 100.0)
        }
    }
}

/// One class's outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClassCounts {
    pub class: Class,
    pub expect: Expect,
    pub sent: u64,
    /// Arrived on the inside (forwarded by the scrubber).
    pub passed: u64,
    /// Answered by the scrubber (a reply back on the outside).
    pub answered: u64,
    /// Neither.
    pub dropped: u64,
    /// Attack packets that got through.
    pub false_pass: u64,
    /// Legitimate packets lost (meant to pass, or to pass or be challenged).
    pub false_drop: u64,
    /// Packets meant to be answered that were not (SYN flood SYNs left without a cookie).
    pub unanswered: u64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Tally {
    pub fn latency_summary(&self) -> Latency {
        let us = |q: f64| self.latency_ns(q) as f64 / 1000.0;
        Latency {
            samples: self.latency.len(),
            p50_us: us(50.0),
            p90_us: us(90.0),
            p99_us: us(99.0),
            p999_us: us(99.9),
            max_us: if self.latency.is_empty() {
                0.0
            } else {
                self.latency.max() as f64 / 1000.0
            },
        }
    }
}

/// What `scrubgen run` writes as JSON (and `scrubgen bench` reads back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub profile: String,
    pub workers: usize,
    /// EAL lcore list (CPU placement) of the generator.
    pub lcores: String,
    /// Target rate in packets/s; 0 = as fast as the port takes them.
    pub rate_pps: u64,
    /// Seconds from the first transmission to the end of the sending window (the duration,
    /// the packet count or a stop ended it).
    pub tx_seconds: f64,
    pub sent: u64,
    pub passed: u64,
    pub answered: u64,
    /// Packets the scrubber took per second (offered and accepted by its RX ring).
    pub offered_mpps: f64,
    /// Packets forwarded to the inside per second.
    pub passed_mpps: f64,
    pub answered_mpps: f64,
    pub false_pass: u64,
    pub false_drop: u64,
    pub untagged_inside: u64,
    pub untagged_outside: u64,
    pub untracked: u64,
    pub unsent: u64,
    pub classes: Vec<ClassCounts>,
    pub latency: Latency,
    /// The ports' own counters: (name, opackets, ipackets, imissed, oerrors).
    pub port_stats: Vec<(String, u64, u64, u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_pass_and_drop_follow_expectations() {
        let mut t = Tally::new();
        let set = |t: &mut Tally, c: Class, s, p, a| {
            t.sent[c as usize] = s;
            t.passed[c as usize] = p;
            t.answered[c as usize] = a;
        };
        set(&mut t, Class::SynFlood, 100, 2, 95);
        set(&mut t, Class::LegitData, 50, 48, 0);
        set(&mut t, Class::LegitSyn, 10, 3, 6);
        set(&mut t, Class::LegitRst, 6, 0, 0);
        set(&mut t, Class::UdpReflection, 20, 1, 0);
        let c = t.classes();
        let get = |k: Class| c.iter().find(|x| x.class == k).unwrap().clone();
        assert_eq!(get(Class::SynFlood).false_pass, 2);
        assert_eq!(get(Class::SynFlood).unanswered, 3);
        assert_eq!(get(Class::LegitData).false_drop, 2);
        assert_eq!(get(Class::LegitSyn).false_drop, 1);
        assert_eq!(
            get(Class::LegitRst).false_drop,
            0,
            "RSTs are meant to be dropped"
        );
        assert_eq!(t.false_pass(), 3);
        assert_eq!(t.false_drop(), 3);
        let mut u = Tally::new();
        u.add(&t);
        u.add(&t);
        assert_eq!(u.false_pass(), 6);
        u.record_latency(1500);
        u.record_latency(u64::MAX);
        assert_eq!(u.latency.len(), 2);
        assert!(u.latency_ns(50.0) >= 1499 && u.latency_ns(50.0) <= 1501);
    }
}
