//! The per-source table shared by every worker: one token bucket per (source prefix, class)
//! for the whole box, updated with atomics.
//!
//! Why shared: RSS hashes ports as well as addresses, so one source's packets to random ports
//! land on every queue. A table per worker grants each source the full rate and burst once per
//! worker (14 workers, 14 times the limit). With one table, a source gets what the operator
//! configured whatever the worker count.
//!
//! # Layout
//! Set-associative, [`WAYS`] slots per set, one set per 128 bytes (two cache lines). A slot is
//! two `AtomicU64`s: a tag and the bucket state. The tag identifies the key (masked address,
//! family, class, class generation) and keeps the class in its bits 1..=3, so the eviction
//! scan knows each slot's mode; bit 4 is the family.
//! - IPv4: the key is 39 bits, so the tag *is* the key (address in bits 5..=36, family,
//!   class and generation below and above it): two IPv4 keys never alias.
//! - IPv6: the tag is a 59-bit keyed hash of the key. Two keys would alias only if set and
//!   tag both collide: a 2^-59 chance per pair with a seed nobody outside knows.
//!
//! The set index is a keyed hash of the key, with secret seeds drawn at start. Why it resists
//! an attacker who wants many keys in one set (HashDoS): the index is taken from one folded
//! 64×64→128-bit multiply of the key mixed with a secret in *each* factor, `mum(x ⊕ k0,
//! rotl(x, 32) ⊕ k1)`, as in wyhash/foldhash; which key lands in which set depends on the
//! seeds through a non-linear function (a carry-propagating product, not a linear map whose
//! collisions repeat by difference), and no packet ever reveals an index or a hash. That is the
//! same secret-dependent step the IPv6 path (and this table's first version) starts with; the
//! further unkeyed multiplies the IPv6 path adds only spread bits for its tag.
//!
//! # Bucket state in one word
//! - `token_bucket` is kept as GCRA (the "virtual scheduling" form of a token bucket): the
//!   state is the theoretical arrival time TAT, in TSC ticks with [`FRAC_BITS`] fraction bits,
//!   modulo 2^64. A packet at `now` passes iff `max(TAT, now) + I − now ≤ burst·I`, where `I`
//!   is the emission interval `tsc_hz / rate` rounded *up* to the fixed-point grain, and then
//!   TAT becomes `max(TAT, now) + I`. That is exactly a bucket of `burst` tokens refilled at
//!   `rate` per second (at most rate·2^-8/I slower, from the rounding up: never faster), so
//!   over any interval of t seconds a key passes at most `burst + rate·t` packets.
//! - `fixed_window` packs a 32-bit window number (TSC / window length) and a 32-bit count.
//!   Windows are aligned to multiples of `burst / rate` seconds of TSC time.
//!
//! A packet that is over its limit only *reads* the slot: a flooding source's drops cost no
//! cache-line transfer between cores; only admitted packets write (one compare-exchange).
//!
//! # Concurrency and its tolerance
//! Admission is a compare-exchange loop on the state word, so concurrent workers never admit
//! more than the bucket holds. The one imprecision: when a key is not in the table, the worker
//! that misses claims a victim slot with a compare-exchange on its tag and starts it full. If
//! several workers miss the same new key in the same few hundred nanoseconds and see
//! different victims, each may start its own copy: at most `workers − 1` packets beyond the
//! bound per insertion of a key (lookups afterwards all find the first copy in way order; the
//! others age out). A key is inserted once and then stays while it is active (see eviction),
//! so a flooding source gets this at most once.
//!
//! # Eviction
//! A new key takes, in order: an empty slot; a slot whose bucket is full at `now` (or whose
//! class no longer has a limit): evicting it loses nothing, since a new key starts full; then
//! the slot whose bucket will be full soonest. A flooding source keeps a drained bucket far
//! from full, so it is the last to go; a source that pauses long enough to refill is only owed
//! what a token bucket would have refilled anyway.

use crate::foldhash::{mum, Placement};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Ways per set.
pub const WAYS: usize = 8;
/// Fraction bits of the GCRA time grain: 1/256 TSC tick.
pub const FRAC_BITS: u32 = 8;
/// The largest `burst / rate` (in fixed-point ticks) a token bucket may have, so that a live
/// state is always within 2^62 of `now` and the wrapping comparison is unambiguous. At 4 GHz
/// that is 52 days.
pub const MAX_HORIZON_FX: u64 = 1 << 62;

/// How a class meters its keys, precomputed from its limit (see [`super::Params`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meter {
    /// GCRA: emission interval and burst·interval, both fixed-point ticks.
    Gcra { interval: u64, limit: u64 },
    /// Aligned windows of `ticks` TSC ticks, `burst` packets each.
    Window { ticks: u64, burst: u64 },
}

impl Meter {
    /// The state a fresh key starts in at `now`: a full bucket, a new window.
    #[inline]
    fn fresh(self, now: u64) -> u64 {
        match self {
            Meter::Gcra { .. } => now << FRAC_BITS,
            Meter::Window { ticks, .. } => window_word(now / ticks, 0),
        }
    }

    /// The state after admitting one packet at `now`, or `None` if it must be dropped.
    #[inline]
    fn take(self, state: u64, now: u64) -> Option<u64> {
        match self {
            Meter::Gcra { interval, limit } => {
                let now = now << FRAC_BITS;
                let base = if refilled(state, now) { now } else { state };
                let next = base.wrapping_add(interval);
                (next.wrapping_sub(now) <= limit).then_some(next)
            }
            Meter::Window { ticks, burst } => {
                let (w, count) = current_window(state, now / ticks);
                (count < burst).then(|| window_word(w, count + 1))
            }
        }
    }

    /// Ticks until this state is a full bucket again (0 = full now); the eviction rank.
    #[inline]
    fn ticks_to_full(self, state: u64, now: u64) -> u64 {
        match self {
            Meter::Gcra { .. } => {
                let now = now << FRAC_BITS;
                if refilled(state, now) {
                    0
                } else {
                    state.wrapping_sub(now) >> FRAC_BITS
                }
            }
            Meter::Window { ticks, .. } => match current_window(state, now / ticks) {
                (_, 0) => 0,
                _ => ticks - now % ticks,
            },
        }
    }
}

/// Whether a GCRA state is at or behind `now` (fixed point): the bucket is full. Live states
/// are at most `burst·I < 2^62` ahead of the `now` that wrote them; another core's `now` may
/// lag that by a little (TSC read at its burst start), which still reads as ahead, i.e. not
/// refilled. A state 2^62 or more ahead can only be one so old that the clock wrapped past it.
#[inline]
fn refilled(state: u64, now: u64) -> bool {
    let ahead = state.wrapping_sub(now);
    (ahead as i64) <= 0 || ahead >= MAX_HORIZON_FX
}

/// The window a packet at window number `w` counts in, and the count there so far. A state
/// written for a *later* window (by a core whose TSC was read a little later) is that window:
/// a lagging `now` must not reopen an older one and grant a second burst.
#[inline]
fn current_window(state: u64, w: u64) -> (u64, u64) {
    let (sw, count) = (state >> 32, state & 0xffff_ffff);
    let lead = (sw as u32).wrapping_sub(w as u32) as i32;
    match lead {
        0 => (w, count),
        1..=16 => (sw, count),
        _ => (w, 0),
    }
}

fn window_word(w: u64, count: u64) -> u64 {
    ((w & 0xffff_ffff) << 32) | (count & 0xffff_ffff)
}

#[derive(Default)]
struct Slot {
    /// 0 = empty; otherwise the key (IPv4) or its keyed hash (IPv6, bit 4 set), with bit 0
    /// set and the class in bits 1..=3.
    tag: AtomicU64,
    state: AtomicU64,
}

#[derive(Default)]
#[repr(align(128))]
struct Set([Slot; WAYS]);

/// What an insertion did to the table, for the calling worker's counters. A hit (the common
/// case) reports nothing, so the hit path writes no counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub evicted: bool,
    /// The evicted key's bucket was not full (its state mattered).
    pub evicted_active: bool,
}

/// See the module documentation.
pub struct SourceTable {
    sets: Box<[Set]>,
    /// Keys the set index (see the module documentation).
    place: Placement,
    k2: u64,
}

/// The class stored in a tag's bits 1..=3.
#[inline]
pub fn tag_class(tag: u64) -> usize {
    ((tag >> 1) & 0x7) as usize
}

/// Tag bit 4: the key is an IPv6 prefix (its tag is a hash, not the key itself).
const TAG_V6: u64 = 0x10;

/// The part of an IPv4 key that depends only on its class (class and generation), computed
/// when the class is set rather than per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Key {
    /// The class and generation bits above the 32 address bits.
    hi: u64,
    /// The tag's low bits: the class in bits 1..=3, bit 0 set, family bit 4 clear.
    tag_lo: u64,
}

impl V4Key {
    /// `extra`: the class and generation bits as [`SourceTable::locate_v6`] takes them (its
    /// family bit 0 is ignored: this is IPv4).
    pub fn new(class: usize, extra: u64) -> V4Key {
        V4Key {
            hi: (extra & 0x7e) << 32,
            tag_lo: ((class as u64 & 0x7) << 1) | 1,
        }
    }
}

impl SourceTable {
    /// At least `capacity` slots, in whole sets. The seeds key the hash: random in production.
    pub fn new(capacity: usize, k0: u64, k1: u64, k2: u64) -> SourceTable {
        let n = capacity.div_ceil(WAYS).max(1);
        // Writing every slot here (the defaults are zero stores) makes the pages resident
        // before any worker looks up a key: no page fault on the packet path.
        SourceTable {
            sets: (0..n).map(|_| Set::default()).collect(),
            place: Placement::new(k0, k1),
            k2,
        }
    }

    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Occupied slots; walks the table, so for the control plane and tests only.
    pub fn len(&self) -> usize {
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .filter(|s| s.tag.load(Relaxed) != 0)
            .count()
    }

    /// Lemire's multiply-shift maps a 64-bit hash onto any number of sets without a modulo.
    #[inline]
    fn set_of(&self, h: u64) -> usize {
        ((u128::from(h) * self.sets.len() as u128) >> 64) as usize
    }

    /// Set index and tag of an IPv4 key: `addr` already masked to the source prefix, `key`
    /// the class's part. The tag is the key itself (see the module documentation); only the
    /// set index is hashed, with one keyed folded multiply.
    #[inline]
    pub fn locate_v4(&self, addr: u32, key: V4Key) -> (usize, u64) {
        let x = u64::from(addr) | key.hi;
        let h = self.place.of(x, 0);
        (self.set_of(h), (x << 5) | key.tag_lo)
    }

    /// Set index and tag of an IPv6 key. `extra` carries the family (bit 0), class (bits
    /// 1..=3) and generation (bits 4..=6) bits.
    #[inline]
    pub fn locate_v6(&self, addr: u128, class: usize, extra: u64) -> (usize, u64) {
        // Keyed folded multiplies. Both factors of the first vary with the address (the low
        // half is also rotated into the second), so no seed collapses every key onto one set.
        let (lo, hi) = (addr as u64, (addr >> 64) as u64);
        let x = self.place.of(lo, hi);
        let h = mum(x ^ extra, 0x9e37_79b9_7f4a_7c15);
        let t = mum(x ^ self.k2 ^ extra.rotate_left(17), 0xd6e8_feb8_6659_fd93);
        let tag = (t & !0x1f) | TAG_V6 | ((class as u64 & 0x7) << 1) | 1;
        (self.set_of(h), tag)
    }

    /// Admits one packet of the key (`set`, `tag`) metered by `meter` at TSC `now`. `meter_of`
    /// gives the meter of another slot's class for the eviction rank (None = no limit any more);
    /// `on_insert` is called once if the key had to be inserted.
    #[inline]
    pub fn admit(
        &self,
        set: usize,
        tag: u64,
        meter: &Meter,
        now: u64,
        meter_of: impl Fn(usize) -> Option<Meter>,
        on_insert: impl FnOnce(Touched),
    ) -> bool {
        let Some(ways) = self.sets.get(set) else {
            return true;
        };
        for s in &ways.0 {
            if s.tag.load(Relaxed) == tag {
                return Self::take(s, meter, now);
            }
        }
        Self::insert(ways, tag, *meter, now, meter_of, on_insert)
    }

    /// The miss path of [`SourceTable::admit`], kept out of line: a key is inserted once and
    /// then hit for as long as it is active, so the hit path stays small where it is inlined.
    #[cold]
    #[inline(never)]
    fn insert(
        ways: &Set,
        tag: u64,
        meter: Meter,
        now: u64,
        meter_of: impl Fn(usize) -> Option<Meter>,
        on_insert: impl FnOnce(Touched),
    ) -> bool {
        // Miss: pick a victim and claim it. A lost race re-runs the scan (the winner may have
        // inserted this very key); after WAYS attempts the packet is judged as a fresh key.
        for _ in 0..WAYS {
            let mut best = (u8::MAX, u64::MAX, 0usize, 0u64, 0u64);
            for (i, s) in ways.0.iter().enumerate() {
                let t = s.tag.load(Relaxed);
                if t == tag {
                    return Self::take(s, &meter, now);
                }
                let st = s.state.load(Relaxed);
                let rank = if t == 0 {
                    (0, 0)
                } else {
                    match meter_of(tag_class(t)) {
                        None => (1, 0),
                        Some(m) => match m.ticks_to_full(st, now) {
                            0 => (1, 0),
                            n => (2, n),
                        },
                    }
                };
                if (rank.0, rank.1) < (best.0, best.1) {
                    best = (rank.0, rank.1, i, t, st);
                }
            }
            let (rank, _, i, old_tag, old_state) = best;
            let Some(s) = ways.0.get(i) else {
                return true;
            };
            if s.tag
                .compare_exchange(old_tag, tag, Relaxed, Relaxed)
                .is_err()
            {
                continue;
            }
            on_insert(Touched {
                evicted: rank != 0,
                evicted_active: rank == 2,
            });
            // Start the bucket full and take this packet from it. If another worker already
            // found the new tag and moved the state, judge against what it left.
            let fresh = meter.fresh(now);
            let first = meter.take(fresh, now).unwrap_or(fresh);
            if s.state
                .compare_exchange(old_state, first, Relaxed, Relaxed)
                .is_ok()
            {
                return first != fresh;
            }
            return Self::take(s, &meter, now);
        }
        true
    }

    #[inline]
    fn take(s: &Slot, meter: &Meter, now: u64) -> bool {
        let mut cur = s.state.load(Relaxed);
        loop {
            let Some(next) = meter.take(cur, now) else {
                return false;
            };
            match s.state.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HZ: u64 = 1_000_000;

    fn gcra(rate: u64, burst: u64) -> Meter {
        let interval = (HZ << FRAC_BITS).div_ceil(rate);
        Meter::Gcra {
            interval,
            limit: burst * interval,
        }
    }

    #[test]
    fn gcra_is_a_token_bucket() {
        let m = gcra(100, 5);
        let mut s = m.fresh(1000);
        let mut passed = 0;
        for _ in 0..10 {
            if let Some(n) = m.take(s, 1000) {
                s = n;
                passed += 1;
            }
        }
        assert_eq!(passed, 5, "a full bucket holds `burst`");
        // One token every HZ/100 ticks.
        assert!(m.take(s, 1000 + HZ / 100 - 1).is_none());
        assert!(m.take(s, 1000 + HZ / 100).is_some());
        // Long idle: full again, not more.
        let later = 1000 + 100 * HZ;
        assert_eq!(m.ticks_to_full(s, later), 0);
        let mut s2 = s;
        let mut n = 0;
        while let Some(x) = m.take(s2, later) {
            s2 = x;
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn gcra_survives_tsc_wrap_of_the_fixed_point_clock() {
        let m = gcra(1000, 2);
        // Just before the fixed-point clock wraps, and just after.
        let t0 = (u64::MAX >> FRAC_BITS) - 10;
        let s = m.take(m.fresh(t0), t0).unwrap();
        let s = m.take(s, t0).unwrap();
        assert!(m.take(s, t0).is_none());
        assert!(
            m.take(s, t0 + 20).is_none(),
            "20 ticks refill nothing at 1000/s"
        );
        assert!(m.take(s, t0 + HZ / 1000 + 1).is_some());
    }

    #[test]
    fn fixed_window_counts_per_aligned_window() {
        let m = Meter::Window {
            ticks: 100,
            burst: 3,
        };
        let mut s = m.fresh(250);
        for _ in 0..3 {
            s = m.take(s, 250).unwrap();
        }
        assert!(m.take(s, 299).is_none());
        assert_eq!(m.ticks_to_full(s, 299), 1);
        assert!(m.take(s, 300).is_some(), "new window at 300");
    }

    /// Threads hammering one key, each walking the same TSC span at its own pace: returns the
    /// total admitted and the bound burst + rate·t (t = the span of TSC values used).
    fn hammer(threads: usize, rate: u64, burst: u64, span_ms: u64, per_thread: u64) -> (u64, u64) {
        let table = Arc::new(SourceTable::new(64, 1, 2, 3));
        let m = gcra(rate, burst);
        let (set, tag) = table.locate_v4(0x0a00_0001, V4Key::new(0, 0));
        let ticks = span_ms * HZ / 1000;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    let mut passed = 0u64;
                    for i in 0..per_thread {
                        let now = 1_000_000 + i * ticks / per_thread + t as u64;
                        if table.admit(set, tag, &m, now, |_| Some(m), |_| ()) {
                            passed += 1;
                        }
                    }
                    passed
                })
            })
            .collect();
        let total = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let span = ticks + threads as u64;
        (total, burst + (rate * span).div_ceil(HZ))
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_bound() {
        for threads in [2usize, 4, 8] {
            let (total, bound) = hammer(threads, 1000, 50, 20, 2_000);
            // The insertion race may add at most threads − 1 (see the module docs).
            assert!(
                total < bound + threads as u64,
                "{threads} threads: {total} passed, bound {bound}"
            );
            assert!(total >= 50, "{threads} threads: the burst must pass");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Whatever the thread count, rate, burst and span: never more than burst + rate·t
        /// (plus the stated insertion-race tolerance), never less than the burst.
        #[test]
        fn any_interleaving_keeps_the_bound(
            threads in 2usize..=4,
            rate in 1u64..100_000,
            burst in 1u64..500,
            span_ms in 1u64..50,
        ) {
            let (total, bound) = hammer(threads, rate, burst, span_ms, 1_500);
            proptest::prop_assert!(total < bound + threads as u64, "{} passed, bound {}", total, bound);
            proptest::prop_assert!(total >= burst.min(1_500 * threads as u64));
        }
    }

    #[test]
    fn ipv4_tags_are_the_key_and_never_meet_ipv6_tags() {
        let t = SourceTable::new(1 << 16, 11, 22, 33);
        let mut seen = std::collections::HashSet::new();
        for addr in [0u32, 1, 0x0a00_0001, 0x8000_0000, u32::MAX] {
            for class in 0..5usize {
                for generation in 0..8u64 {
                    let extra = (class as u64) << 1 | generation << 4;
                    let (set, tag) = t.locate_v4(addr, V4Key::new(class, extra));
                    assert!(set < t.sets.len());
                    assert_eq!((tag & 1, tag & TAG_V6), (1, 0));
                    assert_eq!(tag_class(tag), class);
                    assert_eq!((tag >> 5) as u32, addr, "the address is in the tag");
                    assert!(seen.insert(tag), "distinct keys, distinct tags");
                    let (set6, tag6) = t.locate_v6(u128::from(addr), class, extra | 1);
                    assert!(set6 < t.sets.len());
                    assert_eq!((tag6 & 1, tag6 & TAG_V6), (1, TAG_V6));
                    assert_eq!(tag_class(tag6), class);
                }
            }
        }
    }

    #[test]
    fn ipv4_keys_spread_over_the_sets() {
        // 8192 sets, 65,536 keys (a mean of 8 per set) laid out as a scanner would pick them:
        // consecutive addresses, one per /24, and one class apart. A degenerate index would
        // pile them up; a keyed hash leaves the fullest set near the Poisson tail (about 20).
        for seed in [1u64, 0xdead_beef_0bad_f00d] {
            let t = SourceTable::new(1 << 16, seed, seed.rotate_left(9) ^ 5, 3);
            for (stride, class) in [(1u32, 0usize), (256, 0), (1, 4)] {
                let mut load = vec![0u32; t.sets.len()];
                for a in 0..65_536u32 {
                    let (set, _) = t.locate_v4(
                        0x0a00_0000u32.wrapping_add(a * stride),
                        V4Key::new(class, (class as u64) << 1),
                    );
                    load[set] += 1;
                }
                let max = load.iter().copied().max().unwrap_or(0);
                assert!(
                    max <= 32,
                    "seed {seed:#x} stride {stride}: a set holds {max} keys"
                );
            }
        }
    }

    #[test]
    fn victims_are_empty_then_full_then_closest_to_full() {
        let t = SourceTable::new(WAYS, 9, 8, 7);
        let m = gcra(1, 1); // one token per second
        let mut keys = Vec::new();
        let mut a = 0u32;
        while keys.len() < WAYS + 2 {
            let (set, tag) = t.locate_v4(a, V4Key::new(0, 0));
            assert_eq!(set, 0, "one set");
            keys.push(tag);
            a += 1;
        }
        let admit = |tag, now| {
            let mut tc = None;
            let ok = t.admit(0, tag, &m, now, |_| Some(m), |x| tc = Some(x));
            (ok, tc)
        };
        for (i, &tag) in keys.iter().take(WAYS).enumerate() {
            let (ok, tc) = admit(tag, 1 + i as u64);
            assert!(ok);
            assert_eq!(tc, Some(Touched::default()), "inserted, nothing evicted");
        }
        // A hit reports no insertion (and a drained key is dropped).
        assert_eq!(admit(keys[7], 9), (false, None));
        // All drained; key 0 (drained first) is the closest to full and goes.
        let (ok, tc) = admit(keys[WAYS], 100);
        assert!(ok);
        let active = Touched {
            evicted: true,
            evicted_active: true,
        };
        assert_eq!(tc, Some(active));
        let (ok, tc) = admit(keys[0], 101);
        assert!(ok, "key 0 starts full again");
        assert_eq!(
            tc,
            Some(active),
            "and pushed out key 1, the next closest to full"
        );
        // After a while everyone is full again: eviction loses nothing.
        let (ok, tc) = admit(keys[WAYS + 1], 10 * HZ);
        assert!(ok);
        assert_eq!(
            tc,
            Some(Touched {
                evicted: true,
                evicted_active: false
            })
        );
        assert_eq!(t.len(), WAYS);
    }
}
