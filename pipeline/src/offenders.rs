//! Who is being dropped: a bounded heavy-hitter sketch of the addresses behind dropped packets.
//!
//! Per-packet logging is impossible at line rate and useless under a spoofed flood, but an
//! operator under attack still needs to see the top sources and destinations per drop reason.
//! Each worker keeps a fixed-size sketch (no allocation after construction) that the pipeline
//! feeds on its drop path; the control thread merges the workers' exports.

use std::net::IpAddr;

/// Which address of a dropped packet an entry counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Src,
    Dst,
}

/// One tracked (address, drop reason) key with its estimated count. Space-Saving style
/// estimates over-count by at most `error`: the true count lies in `count - error ..= count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffenderEntry {
    pub side: Side,
    pub addr: IpAddr,
    /// Drop-reason slot (see [`crate::counters::slot_name`]).
    pub reason: u16,
    pub count: u64,
    pub error: u64,
}

use siphasher::sip::SipHasher13;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest per-side capacity a sketch takes. The top of a drop stream that an operator can
/// read is a few dozen entries; past this, memory (about 7 MiB per side) buys nothing, and
/// counter and bucket ids stay well inside `u32`.
pub const MAX_CAPACITY: usize = 65536;

/// Index slot that holds no counter.
const EMPTY: u32 = u32::MAX;

/// The address in a fixed-width form: comparing and hashing a `u128` is cheaper than matching
/// on `IpAddr`, and the version flag keeps 1.2.3.4 apart from ::1.2.3.4 and ::ffff:1.2.3.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    addr: u128,
    v6: bool,
    reason: u16,
}

impl Key {
    fn new(addr: IpAddr, reason: u16) -> Key {
        match addr {
            IpAddr::V4(a) => Key {
                addr: u128::from(u32::from(a)),
                v6: false,
                reason,
            },
            IpAddr::V6(a) => Key {
                addr: u128::from(a),
                v6: true,
                reason,
            },
        }
    }

    fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        } else {
            // Only ever built from a u32 above, so the truncation loses nothing.
            IpAddr::V4(Ipv4Addr::from(self.addr as u32))
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    key: Key,
    /// Kept so the index can find a counter's home slot when it shifts entries on delete,
    /// without rehashing.
    hash: u64,
    error: u64,
    /// Where the index points at this counter.
    slot: u32,
    /// Where this counter sits in `Summary::order`.
    pos: u32,
    /// The bucket holding this counter's count.
    bucket: u32,
}

/// A run of counters with the same count: positions `first..=last` of `Summary::order`.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    count: u64,
    first: u32,
    last: u32,
}

/// One side's Space-Saving summary in Metwally's stream-summary form, laid out in arrays:
/// counters ordered by count (descending) with equal counts grouped in buckets, so an
/// increment moves a counter to the front of its bucket and into the next one, and the
/// eviction victim is always the last counter. Every operation is O(1); under a spoofed flood,
/// where all counters share a count, a heap would instead sift every takeover to the bottom.
/// A linear-probing index maps keys to counters.
#[derive(Clone, Debug)]
struct Summary {
    /// Counter storage; a counter's id (its index here) never changes, a takeover reuses it.
    counters: Vec<Counter>,
    /// Counter ids by count, highest first.
    order: Vec<u32>,
    /// Bucket pool: there are never more live buckets than counters.
    buckets: Vec<Bucket>,
    free: Vec<u32>,
    /// Power-of-two table at least twice the capacity, so probes stay short and an empty slot
    /// always exists; holds counter ids.
    index: Vec<u32>,
    mask: usize,
    cap: usize,
    recorded: u64,
}

impl Summary {
    fn new(cap: usize) -> Summary {
        let size = if cap == 0 {
            0
        } else {
            (cap * 2).next_power_of_two()
        };
        let mut s = Summary {
            counters: Vec::with_capacity(cap),
            order: Vec::with_capacity(cap),
            buckets: vec![Bucket::default(); cap],
            free: Vec::with_capacity(cap),
            index: vec![EMPTY; size],
            mask: size.saturating_sub(1),
            cap,
            recorded: 0,
        };
        s.clear();
        s
    }

    fn clear(&mut self) {
        self.counters.clear();
        self.order.clear();
        self.free.clear();
        // `cap` is at most MAX_CAPACITY, so ids fit in u32.
        self.free.extend((0..self.cap as u32).rev());
        self.index.fill(EMPTY);
        self.recorded = 0;
    }

    fn count_of(&self, c: &Counter) -> u64 {
        self.buckets[c.bucket as usize].count
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (hash as usize) & self.mask
    }

    /// `Ok(counter id)` of `key`, or `Err(first empty slot)` on its probe path.
    #[inline]
    fn find(&self, key: &Key, hash: u64) -> Result<usize, usize> {
        let mut s = self.home(hash);
        // The table is never more than half full, so the loop ends at an empty slot; the bound
        // only keeps a broken invariant from spinning.
        for _ in 0..self.index.len() {
            let e = self.index[s];
            if e == EMPTY {
                return Err(s);
            }
            let c = &self.counters[e as usize];
            if c.hash == hash && c.key == *key {
                return Ok(e as usize);
            }
            s = (s + 1) & self.mask;
        }
        Err(s)
    }

    /// First empty slot on the probe path of `hash`, for a key known to be absent.
    #[inline]
    fn empty_slot(&self, hash: u64) -> usize {
        let mut s = self.home(hash);
        for _ in 0..self.index.len() {
            if self.index[s] == EMPTY {
                break;
            }
            s = (s + 1) & self.mask;
        }
        s
    }

    #[inline]
    fn record(&mut self, key: Key, hash: u64) {
        if self.cap == 0 {
            return;
        }
        self.recorded = self.recorded.saturating_add(1);
        match self.find(&key, hash) {
            Ok(id) => self.increment(id),
            Err(slot) if self.counters.len() < self.cap => self.insert(key, hash, slot),
            Err(_) => self.take_over(key, hash),
        }
    }

    /// A new key while there is room: count 1, the lowest possible, so it goes last.
    #[inline]
    fn insert(&mut self, key: Key, hash: u64, slot: usize) {
        let id = self.counters.len();
        let pos = self.order.len();
        let tail = self.order.last().map(|&t| self.counters[t as usize].bucket);
        let bucket = match tail {
            Some(b) if self.buckets[b as usize].count == 1 => {
                self.buckets[b as usize].last = pos as u32;
                b
            }
            _ => {
                // Live buckets never outnumber counters, and there are fewer than `cap`.
                let Some(b) = self.free.pop() else { return };
                self.buckets[b as usize] = Bucket {
                    count: 1,
                    first: pos as u32,
                    last: pos as u32,
                };
                b
            }
        };
        // Within the capacity reserved in `new`: no reallocation.
        self.counters.push(Counter {
            key,
            hash,
            error: 0,
            slot: slot as u32,
            pos: pos as u32,
            bucket,
        });
        self.order.push(id as u32);
        self.index[slot] = id as u32;
    }

    /// Space-Saving takeover: the newcomer replaces a minimum counter, inherits its count
    /// (plus this packet) and records it as its possible over-count. The common case under a
    /// spoofed flood, hence inlined with the rest of `record`.
    #[inline(always)]
    fn take_over(&mut self, key: Key, hash: u64) {
        let Some(&victim) = self.order.last() else {
            return;
        };
        let id = victim as usize;
        let min = self.count_of(&self.counters[id]);
        self.unindex(self.counters[id].slot as usize);
        let slot = self.empty_slot(hash);
        let c = &mut self.counters[id];
        c.key = key;
        c.hash = hash;
        c.error = min;
        c.slot = slot as u32;
        self.index[slot] = victim;
        self.increment(id);
    }

    /// Count one more for counter `id`: swap it to the front of its bucket, then move that
    /// position into the bucket of count + 1 (the preceding one, or a new one).
    #[inline(always)]
    fn increment(&mut self, id: usize) {
        let b = self.counters[id].bucket as usize;
        let Bucket { count, first, last } = self.buckets[b];
        let Some(new) = count.checked_add(1) else {
            return;
        };
        let (f, i) = (first as usize, self.counters[id].pos as usize);
        if i != f {
            let other = self.order[f];
            self.order[f] = id as u32;
            self.order[i] = other;
            self.counters[other as usize].pos = i as u32;
            self.counters[id].pos = first;
        }
        let alone = last == first;
        let prev = match f.checked_sub(1) {
            Some(p) => Some(self.counters[self.order[p] as usize].bucket),
            None => None,
        };
        match prev {
            Some(pb) if self.buckets[pb as usize].count == new => {
                self.buckets[pb as usize].last = first;
                self.counters[id].bucket = pb;
                if alone {
                    self.free.push(b as u32);
                } else {
                    self.buckets[b].first = first + 1;
                }
            }
            _ if alone => self.buckets[b].count = new,
            _ => {
                // `b` keeps at least one other counter, so fewer than `cap` buckets are live.
                let Some(nb) = self.free.pop() else { return };
                self.buckets[b].first = first + 1;
                self.buckets[nb as usize] = Bucket {
                    count: new,
                    first,
                    last: first,
                };
                self.counters[id].bucket = nb;
            }
        }
    }

    /// Empties index slot `hole` by shifting later entries of the same probe run back
    /// (backward-shift deletion): no tombstones, so a flood of takeovers cannot lengthen probes.
    #[inline]
    fn unindex(&mut self, mut hole: usize) {
        self.index[hole] = EMPTY;
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let e = self.index[j];
            if e == EMPTY {
                return;
            }
            let home = self.home(self.counters[e as usize].hash);
            // The entry may fill the hole only if the hole lies on its probe path home..=j.
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.index[hole] = e;
                self.counters[e as usize].slot = hole as u32;
                self.index[j] = EMPTY;
                hole = j;
            }
        }
    }
}

/// A worker's offender sketch: one Space-Saving summary of dropped packets' source addresses
/// and one of their destinations, each keyed by (address, drop-reason slot).
///
/// Space-Saving (Metwally, Agrawal, El Abbadi 2005) with `capacity` counters per side keeps
/// every key whose true count exceeds `recorded / capacity`, and each estimate over-counts by
/// at most its `error`. Keys are hashed with SipHash-1-3 under a random key drawn at
/// construction, so an attacker who picks source addresses cannot aim them at one probe run of
/// the index and turn every drop into a long scan.
#[derive(Clone, Debug)]
pub struct Offenders {
    src: Summary,
    dst: Summary,
    k0: u64,
    k1: u64,
}

impl Offenders {
    /// A sketch with `capacity` counters per side (clamped to [`MAX_CAPACITY`]), hash key drawn
    /// from the process's random source. All memory is allocated here.
    pub fn new(capacity: usize) -> Offenders {
        // RandomState is keyed from OS randomness; hashing two constants under it yields two
        // unpredictable words without another dependency.
        let rs = RandomState::new();
        Offenders::with_key(capacity, rs.hash_one(0u8), rs.hash_one(1u8))
    }

    /// Like [`Offenders::new`] with a chosen hash key, for reproducible tests and benchmarks.
    pub fn with_key(capacity: usize, k0: u64, k1: u64) -> Offenders {
        let cap = capacity.min(MAX_CAPACITY);
        Offenders {
            src: Summary::new(cap),
            dst: Summary::new(cap),
            k0,
            k1,
        }
    }

    #[inline]
    fn hash(&self, key: &Key) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        if key.v6 {
            // Truncations split the address into its two halves.
            h.write_u64((key.addr >> 64) as u64);
            h.write_u64(key.addr as u64);
            h.write_u16(key.reason);
        } else {
            // One 8-byte word: address, reason, and a marker bit that keeps it apart from the
            // (longer) IPv6 encoding's prefix.
            h.write_u64((1 << 63) | ((key.addr as u64) << 16) | u64::from(key.reason));
        }
        h.finish()
    }

    /// Counts one dropped packet under `reason_slot` for each address given. `None` (no
    /// trustworthy address) counts nothing on that side. No allocation; O(log capacity).
    #[inline]
    pub fn record(&mut self, src: Option<IpAddr>, dst: Option<IpAddr>, reason_slot: u16) {
        if self.src.cap == 0 {
            return;
        }
        if let Some(a) = src {
            let k = Key::new(a, reason_slot);
            let h = self.hash(&k);
            self.src.record(k, h);
        }
        if let Some(a) = dst {
            let k = Key::new(a, reason_slot);
            let h = self.hash(&k);
            self.dst.record(k, h);
        }
    }

    /// Replaces `out`'s contents with every tracked entry, sources first, each side by count
    /// descending (ties by reason, then address, so exports are deterministic). At most
    /// [`Offenders::max_entries`] entries: a `Vec` with that capacity is filled without
    /// allocating.
    pub fn export_into(&self, out: &mut Vec<OffenderEntry>) {
        out.clear();
        for (side, s) in [(Side::Src, &self.src), (Side::Dst, &self.dst)] {
            out.extend(s.counters.iter().map(|c| OffenderEntry {
                side,
                addr: c.key.addr(),
                reason: c.key.reason,
                count: s.count_of(c),
                error: c.error,
            }));
        }
        out.sort_unstable_by(|a, b| {
            a.side
                .cmp(&b.side)
                .then(b.count.cmp(&a.count))
                .then(a.reason.cmp(&b.reason))
                .then(a.addr.cmp(&b.addr))
        });
    }

    /// Entries currently tracked, both sides together.
    pub fn len(&self) -> usize {
        self.src.counters.len() + self.dst.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters per side.
    pub fn capacity(&self) -> usize {
        self.src.cap
    }

    /// Most entries [`Offenders::export_into`] can write: both sides full.
    pub fn max_entries(&self) -> usize {
        2 * self.src.cap
    }

    /// Packets recorded on one side since construction or [`Offenders::clear`]: the stream
    /// length N of the Space-Saving bound (keys above N / capacity are guaranteed present).
    pub fn recorded(&self, side: Side) -> u64 {
        match side {
            Side::Src => self.src.recorded,
            Side::Dst => self.dst.recorded,
        }
    }

    /// Forgets every entry, keeping the memory and the hash key.
    pub fn clear(&mut self) {
        self.src.clear();
        self.dst.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// Order, buckets, free list and index agree, and every key is reachable from its home.
    fn check(s: &Summary) {
        let n = s.counters.len();
        assert!(n <= s.cap);
        assert_eq!(s.order.len(), n);
        let mut live = std::collections::BTreeSet::new();
        for (p, &id) in s.order.iter().enumerate() {
            let c = &s.counters[id as usize];
            assert_eq!(c.pos as usize, p, "position of {id}");
            let b = &s.buckets[c.bucket as usize];
            assert!(
                b.first as usize <= p && p <= b.last as usize,
                "bucket span at {p}"
            );
            assert!(b.count >= 1);
            if p > 0 {
                let prev = &s.counters[s.order[p - 1] as usize];
                let pc = s.count_of(prev);
                assert!(pc >= b.count, "descending at {p}");
                assert_eq!(
                    pc == b.count,
                    prev.bucket == c.bucket,
                    "one bucket per count at {p}"
                );
            }
            live.insert(c.bucket);
            assert_eq!(s.index[c.slot as usize], id, "back pointer of {id}");
            assert_eq!(s.find(&c.key, c.hash), Ok(id as usize), "reachable {id}");
        }
        assert_eq!(live.len() + s.free.len(), s.cap, "buckets leak");
        assert!(s.free.iter().all(|b| !live.contains(b)));
        let used = s.index.iter().filter(|&&e| e != EMPTY).count();
        assert_eq!(used, n);
    }

    fn entries(o: &Offenders) -> Vec<OffenderEntry> {
        let mut v = Vec::with_capacity(o.max_entries());
        o.export_into(&mut v);
        v
    }

    fn find(v: &[OffenderEntry], side: Side, addr: IpAddr, reason: u16) -> Option<OffenderEntry> {
        v.iter()
            .copied()
            .find(|e| e.side == side && e.addr == addr && e.reason == reason)
    }

    #[test]
    fn takeover_inherits_the_minimum_as_error() {
        let mut o = Offenders::with_key(2, 1, 2);
        let (a, b, c) = (v4(1, 1, 1, 1), v4(2, 2, 2, 2), v4(3, 3, 3, 3));
        for _ in 0..3 {
            o.record(Some(a), None, 9);
        }
        o.record(Some(b), None, 9);
        o.record(Some(c), None, 9);
        check(&o.src);
        let v = entries(&o);
        assert_eq!(v.len(), 2);
        assert_eq!(find(&v, Side::Src, b, 9), None, "b was the minimum");
        let ec = find(&v, Side::Src, c, 9).unwrap();
        assert_eq!((ec.count, ec.error), (2, 1));
        let ea = find(&v, Side::Src, a, 9).unwrap();
        assert_eq!((ea.count, ea.error), (3, 0));
        // Sorted by count, and the destination side saw nothing.
        assert_eq!(v[0].addr, a);
        assert_eq!(o.recorded(Side::Src), 5);
        assert_eq!(o.recorded(Side::Dst), 0);
        // b comes back by taking over c's (now minimum) counter.
        o.record(Some(b), None, 9);
        let eb = find(&entries(&o), Side::Src, b, 9).unwrap();
        assert_eq!((eb.count, eb.error), (3, 2));
    }

    #[test]
    fn reasons_and_sides_are_separate_keys() {
        let mut o = Offenders::with_key(8, 3, 4);
        let (x, y) = (v4(192, 0, 2, 1), v4(198, 51, 100, 7));
        o.record(Some(x), Some(y), 1);
        o.record(Some(x), Some(y), 1);
        o.record(Some(x), Some(y), 2);
        o.record(Some(y), None, 1);
        let v = entries(&o);
        assert_eq!(o.len(), 5);
        assert_eq!(find(&v, Side::Src, x, 1).unwrap().count, 2);
        assert_eq!(find(&v, Side::Src, x, 2).unwrap().count, 1);
        assert_eq!(find(&v, Side::Src, y, 1).unwrap().count, 1);
        assert_eq!(find(&v, Side::Dst, y, 1).unwrap().count, 2);
        assert_eq!(find(&v, Side::Dst, y, 2).unwrap().count, 1);
        assert_eq!(find(&v, Side::Dst, x, 1), None);
        assert!(v.iter().all(|e| e.error == 0));
        assert!(v.windows(2).all(|w| w[0].side <= w[1].side));
        assert_eq!(o.recorded(Side::Src), 4);
        assert_eq!(o.recorded(Side::Dst), 3);
    }

    #[test]
    fn capacity_zero_records_nothing() {
        let mut o = Offenders::with_key(0, 0, 0);
        o.record(Some(v4(1, 2, 3, 4)), Some(v4(5, 6, 7, 8)), 3);
        assert_eq!(o.len(), 0);
        assert!(o.is_empty());
        assert_eq!(o.capacity(), 0);
        assert_eq!(o.recorded(Side::Src), 0);
        let mut v = vec![OffenderEntry {
            side: Side::Dst,
            addr: v4(9, 9, 9, 9),
            reason: 0,
            count: 1,
            error: 0,
        }];
        o.export_into(&mut v);
        assert!(v.is_empty(), "export clears stale entries");
    }

    #[test]
    fn capacity_is_clamped() {
        assert_eq!(
            Offenders::with_key(usize::MAX, 0, 0).capacity(),
            MAX_CAPACITY
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses_stay_distinct() {
        let mut o = Offenders::with_key(16, 5, 6);
        let plain = v4(1, 2, 3, 4);
        let mapped: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        let compat: IpAddr = "::1.2.3.4".parse().unwrap();
        let v6: IpAddr = "2001:db8::dead:beef".parse().unwrap();
        for (n, a) in [(1, plain), (2, mapped), (3, compat), (4, v6)] {
            for _ in 0..n {
                o.record(Some(a), Some(v6), 7);
            }
        }
        let v = entries(&o);
        for (n, a) in [(1, plain), (2, mapped), (3, compat), (4, v6)] {
            assert_eq!(find(&v, Side::Src, a, 7).unwrap().count, n, "{a}");
        }
        assert_eq!(find(&v, Side::Dst, v6, 7).unwrap().count, 10);
        assert_eq!(v[0].addr, v6, "largest source first");
    }

    #[test]
    fn clear_forgets_entries_and_keeps_capacity() {
        let mut o = Offenders::with_key(4, 7, 8);
        for i in 0..10u8 {
            o.record(Some(v4(10, 0, 0, i)), Some(v4(10, 1, 0, i)), 1);
        }
        assert_eq!(o.len(), 8);
        o.clear();
        assert_eq!(o.len(), 0);
        assert_eq!(o.recorded(Side::Dst), 0);
        check(&o.src);
        o.record(Some(v4(10, 0, 0, 1)), None, 1);
        assert_eq!(entries(&o)[0].count, 1);
        assert_eq!(o.capacity(), 4);
    }

    #[test]
    fn export_fills_a_presized_vec_without_growing_it() {
        let mut o = Offenders::with_key(32, 9, 10);
        for i in 0..1000u32 {
            o.record(
                Some(IpAddr::V4(Ipv4Addr::from(i))),
                Some(v4(10, 0, 0, (i % 3) as u8)),
                2,
            );
        }
        let mut v = Vec::with_capacity(o.max_entries());
        let cap = v.capacity();
        let ptr = v.as_ptr();
        o.export_into(&mut v);
        assert_eq!(v.len(), 32 + 3);
        assert_eq!((v.capacity(), v.as_ptr()), (cap, ptr));
    }

    /// A heavy source hidden in a flood of one-packet spoofed sources: Space-Saving must keep
    /// it with a tight estimate while the spoofed keys churn through the other counters.
    #[test]
    fn heavy_source_survives_a_spoofed_flood() {
        let mut o = Offenders::with_key(64, 11, 12);
        let attacker = v4(203, 0, 113, 66);
        let mut x: u32 = 12345;
        let mut truth = 0u64;
        for i in 0..20_000u32 {
            if i.is_multiple_of(10) {
                o.record(Some(attacker), None, 4);
                truth += 1;
            } else {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                o.record(Some(IpAddr::V4(Ipv4Addr::from(x))), None, 4);
            }
        }
        check(&o.src);
        let v = entries(&o);
        assert_eq!(v[0].addr, attacker);
        assert!(v[0].count >= truth && v[0].count - v[0].error <= truth);
        assert!(v[0].count - truth <= 20_000 / 64);
    }

    /// A tiny table churned by many keys, so index deletes shift long runs; the structure must
    /// stay consistent after every operation.
    #[test]
    fn index_stays_consistent_under_churn() {
        let mut o = Offenders::with_key(3, 13, 14);
        for i in 0..5000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761) % 50));
            o.record(Some(a), Some(a), (i % 2) as u16);
            check(&o.src);
            check(&o.dst);
        }
    }

    /// A key drawn from a small universe with a skew, so some keys are heavy and many are light.
    fn key_strategy() -> impl Strategy<Value = (u8, u8)> {
        prop_oneof![
            3 => (0u8..4, 0u8..2),
            1 => (0u8..60, 0u8..3),
        ]
    }

    fn addr_of(i: u8) -> IpAddr {
        if i.is_multiple_of(5) {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)))
        } else {
            v4(10, 0, 0, i)
        }
    }

    proptest! {
        /// Against an exact count: every key above N / capacity is present, every estimate
        /// brackets the truth (count - error <= true <= count), counts sum to N, and the
        /// internal structure is consistent.
        #[test]
        fn space_saving_guarantees_hold(
            cap in 1usize..12,
            k0 in any::<u64>(),
            stream in proptest::collection::vec((key_strategy(), proptest::option::of(0u8..8)), 0..600),
        ) {
            let mut o = Offenders::with_key(cap, k0, !k0);
            let mut src_truth: HashMap<(IpAddr, u16), u64> = HashMap::new();
            let mut dst_truth: HashMap<(IpAddr, u16), u64> = HashMap::new();
            for ((s, reason), d) in &stream {
                let src = addr_of(*s);
                let dst = d.map(addr_of);
                let reason = u16::from(*reason);
                o.record(Some(src), dst, reason);
                *src_truth.entry((src, reason)).or_default() += 1;
                if let Some(d) = dst {
                    *dst_truth.entry((d, reason)).or_default() += 1;
                }
            }
            check(&o.src);
            check(&o.dst);
            let v = entries(&o);
            prop_assert!(v.len() <= o.max_entries());
            for (side, truth) in [(Side::Src, &src_truth), (Side::Dst, &dst_truth)] {
                let n = o.recorded(side);
                prop_assert_eq!(n, truth.values().sum::<u64>());
                let mine: Vec<&OffenderEntry> = v.iter().filter(|e| e.side == side).collect();
                prop_assert_eq!(mine.iter().map(|e| e.count).sum::<u64>(), n);
                prop_assert!(mine.windows(2).all(|w| w[0].count >= w[1].count));
                for e in &mine {
                    let t = truth.get(&(e.addr, e.reason)).copied().unwrap_or(0);
                    prop_assert!(t <= e.count, "{:?} true {}", e, t);
                    prop_assert!(e.count - e.error <= t, "{:?} true {}", e, t);
                }
                for (&(addr, reason), &t) in truth {
                    if t * (cap as u64) > n {
                        prop_assert!(
                            find(&v, side, addr, reason).is_some(),
                            "{:?} {} {} with {} of {} missing", side, addr, reason, t, n
                        );
                    }
                }
            }
        }
    }
}
