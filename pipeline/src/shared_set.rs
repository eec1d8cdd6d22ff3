//! A fixed-size set of keys with sliding expiry that every worker reads and writes at once,
//! without locks.
//!
//! Why shared: RSS spreads one source's connections over every queue (it hashes ports too), so
//! a set kept per worker makes a source authenticated on one core a stranger on the others.
//! This set is one table for the whole box: once any worker inserts a key, every worker finds
//! it on its next lookup (the store is visible to other cores within nanoseconds; there is no
//! batching or broadcast delay).
//!
//! Layout: set-associative, one bucket of [`WAYS`] slots per key. A bucket is one 64-byte cache
//! line (four slots of tag + deadline), so a lookup touches one line. The table is allocated
//! once (and written once, so its pages are resident before any worker reads it) and never
//! grows. Keys come in two kinds ([`SharedSet::hash`], [`SharedSet::hash_v4`]):
//! - Any key as bytes (IPv6 sources, 5-tuples): a keyed SipHash-1-3 of the bytes, its top bit
//!   cleared, is the key's tag, and its low bits pick the bucket. The hash is keyed so that
//!   nobody outside can aim keys at one bucket.
//! - An IPv4 source, the key of nearly every packet under attack: the tag *is* the address
//!   (with the top bit set, so it never equals a hashed tag), and the bucket is one keyed
//!   folded multiply of it ([`crate::foldhash`]: keyed the same way against aiming, some 60
//!   instructions cheaper than the SipHash). Two IPv4 keys never alias.
//!
//! Tags instead of whole keys: a slot holds a 64-bit tag, not the flow itself, so a slot is two
//! atomics. Two different hashed keys with the same hash would alias; within one bucket the
//! bits above the bucket index decide, at least 41 of them even at the largest capacity (2^22
//! slots), so a lookup of a key that is absent matches by accident with a chance below
//! 4·2^-41, which an attacker cannot raise without the secret key.
//!
//! Concurrency (all atomics `Relaxed`: this is a cache of facts that are each true on their
//! own, and no other memory is published through it):
//! - A lookup loads a slot's tag, then its deadline. A writer that takes a slot swaps the tag in
//!   with a compare-exchange and then stores the deadline, so a reader in between may see the
//!   new tag with the previous occupant's deadline. The new key was just validated by the
//!   writer, so answering "present" a few nanoseconds early is harmless; answering "absent"
//!   (the old deadline had passed) costs that one packet a lookup miss.
//! - Two workers inserting the same new key at once usually pick the same slot (same view of
//!   the bucket) and one compare-exchange loses and finds the winner's tag on its rescan; if
//!   their views differ, the key may take two slots. Lookups stop at the first, the other
//!   expires unused. Nothing is ever lost, at worst one slot is wasted for a TTL.
//! - Expiry is sliding, refreshed by hits, but a hit only writes the deadline when at least
//!   1/16 of the TTL has passed since the last write. Without that, a busy source's packets
//!   on 14 cores would bounce the line between them on every packet; with it, a source is
//!   forgotten between TTL·15/16 and TTL after its last packet.
//!
//! Time is the TSC, which DPDK requires to be invariant and synchronised across cores.

use crate::foldhash::Placement;
use crate::siphash::SipKey;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Slots per bucket: four 16-byte slots fill one cache line.
pub const WAYS: usize = 4;

/// Top bit of a tag: set for a key that is its own tag ([`SharedSet::hash_v4`]), clear for a
/// hashed one, so the two kinds never meet.
const DIRECT_TAG: u64 = 1 << 63;

#[derive(Default)]
struct Slot {
    /// 0 = empty (a live tag is never 0, see [`SharedSet::hash`]).
    tag: AtomicU64,
    /// TSC at which the entry stops counting.
    expires: AtomicU64,
}

#[derive(Default)]
#[repr(align(64))]
struct Bucket([Slot; WAYS]);

/// Where a key lives and what it looks like there; computed once per packet by
/// [`SharedSet::hash`] and reused for the lookup and a possible insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashed {
    bucket: usize,
    tag: u64,
}

/// What [`SharedSet::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Took a free or expired slot.
    New,
    /// The key was already present; its deadline moved.
    Refreshed,
    /// The bucket was full of live entries; the one expiring soonest made room.
    Evicted,
    /// Other workers changed the bucket under every attempt; the key was not stored. Needs
    /// several cores inserting into the same bucket in the same few nanoseconds, every time.
    Contended,
}

/// See the module documentation.
pub struct SharedSet {
    buckets: Box<[Bucket]>,
    mask: usize,
    key: SipKey,
    /// [`SharedSet::hash_v4`]'s bucket index, its secrets derived from the same hash key.
    place: Placement,
    ttl: u64,
    /// A hit rewrites the deadline only when it has fallen at least this far below `now + ttl`.
    refresh_slack: u64,
    occupied: AtomicUsize,
}

impl SharedSet {
    /// Room for at least `capacity` keys (rounded up to a power-of-two number of buckets),
    /// each kept `ttl_ticks` after its last refresh. `hash_key` must be secret.
    pub fn new(capacity: usize, ttl_ticks: u64, hash_key: [u8; 16]) -> SharedSet {
        let n = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        // Default-constructed atomics are zero writes, so every page is touched here, on the
        // control side, and no worker takes a page fault on its first lookup.
        let buckets: Box<[Bucket]> = (0..n).map(|_| Bucket::default()).collect();
        let ttl = ttl_ticks.max(1);
        let key = SipKey::new(&hash_key);
        SharedSet {
            buckets,
            mask: n - 1,
            place: Placement::new(key.hash13(b"shared-set k0"), key.hash13(b"shared-set k1")),
            key,
            ttl,
            refresh_slack: ttl / 16,
            occupied: AtomicUsize::new(0),
        }
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Slots holding a key, counting expired ones not yet reused.
    pub fn occupied(&self) -> usize {
        self.occupied.load(Relaxed)
    }

    /// Where the table lives, to prove it never reallocates.
    #[cfg(test)]
    pub(crate) fn storage(&self) -> (*const u8, usize) {
        (self.buckets.as_ptr().cast(), self.buckets.len())
    }

    /// Bucket and tag of a key given as bytes (callers encode their keys unambiguously:
    /// fixed layout, family byte included).
    #[inline]
    pub fn hash<const N: usize>(&self, key: &[u8; N]) -> Hashed {
        let h = self.key.hash13(key);
        Hashed {
            bucket: (h as usize) & self.mask,
            tag: (h & !DIRECT_TAG).max(1),
        }
    }

    /// Bucket and tag of an IPv4 address: the address is its own tag, the bucket one keyed
    /// folded multiply (see the module documentation).
    #[inline]
    pub fn hash_v4(&self, addr: u32) -> Hashed {
        let x = u64::from(addr);
        Hashed {
            bucket: (self.place.of(x, 0) as usize) & self.mask,
            tag: DIRECT_TAG | x,
        }
    }

    #[inline]
    fn bucket(&self, h: Hashed) -> &Bucket {
        // `bucket` was masked by this set's own mask, so it is in range; the fallback to the
        // first bucket only keeps this panic-free should a `Hashed` from another set be passed.
        self.buckets
            .get(h.bucket)
            .unwrap_or_else(|| &self.buckets[0])
    }

    /// Whether the key is present and unexpired at `now`; a hit slides its deadline (see the
    /// module docs for the 1/16 TTL granularity).
    #[inline]
    pub fn contains(&self, h: Hashed, now: u64) -> bool {
        for s in &self.bucket(h).0 {
            if s.tag.load(Relaxed) == h.tag {
                let e = s.expires.load(Relaxed);
                if now >= e {
                    return false;
                }
                let fresh = now.saturating_add(self.ttl);
                if fresh.saturating_sub(e) >= self.refresh_slack {
                    s.expires.store(fresh, Relaxed);
                }
                return true;
            }
        }
        false
    }

    /// Adds the key (or refreshes it). A full bucket evicts the entry expiring soonest, that
    /// is the key seen least recently.
    pub fn insert(&self, h: Hashed, now: u64) -> Inserted {
        let expires = now.saturating_add(self.ttl);
        let b = self.bucket(h);
        for _ in 0..WAYS + 1 {
            let mut free = None;
            let mut stale = None;
            let mut oldest = (u64::MAX, 0usize, 0u64);
            for (i, s) in b.0.iter().enumerate() {
                let t = s.tag.load(Relaxed);
                if t == h.tag {
                    let was = s.expires.swap(expires, Relaxed);
                    return if was > now {
                        Inserted::Refreshed
                    } else {
                        Inserted::New
                    };
                }
                if t == 0 {
                    free = free.or(Some((i, t)));
                    continue;
                }
                let e = s.expires.load(Relaxed);
                if e <= now {
                    stale = stale.or(Some((i, t)));
                } else if e < oldest.0 {
                    oldest = (e, i, t);
                }
            }
            let (i, seen, outcome) = match (free, stale) {
                (Some((i, t)), _) => (i, t, Inserted::New),
                (None, Some((i, t))) => (i, t, Inserted::New),
                (None, None) => (oldest.1, oldest.2, Inserted::Evicted),
            };
            let s = &b.0[i % WAYS];
            if s.tag
                .compare_exchange(seen, h.tag, Relaxed, Relaxed)
                .is_ok()
            {
                s.expires.store(expires, Relaxed);
                if seen == 0 {
                    self.occupied.fetch_add(1, Relaxed);
                }
                return outcome;
            }
        }
        Inserted::Contended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn k(n: u32) -> [u8; 4] {
        n.to_le_bytes()
    }

    /// IPv4 tags are the address itself (top bit set), hashed tags never have the top bit: two
    /// IPv4 sources never alias, and an IPv4 source never aliases a hashed key.
    #[test]
    fn ipv4_tags_are_the_address_and_never_meet_hashed_tags() {
        let s = SharedSet::new(1 << 12, 1000, [9; 16]);
        for a in [0u32, 1, 0x0a00_0001, 0xc000_0201, u32::MAX] {
            let h = s.hash_v4(a);
            assert_eq!(h.tag, DIRECT_TAG | u64::from(a));
            assert!(h.bucket <= s.mask);
        }
        for n in 0..10_000u32 {
            assert_eq!(s.hash(&k(n)).tag & DIRECT_TAG, 0);
            assert_ne!(s.hash(&k(n)).tag, 0);
        }
        // Two addresses in one bucket: each finds only itself.
        let a = 0x0a00_0001;
        let b = (0x0a00_0002..)
            .find(|&b| s.hash_v4(b).bucket == s.hash_v4(a).bucket)
            .expect("some address shares the bucket");
        s.insert(s.hash_v4(a), 1);
        assert!(s.contains(s.hash_v4(a), 2));
        assert!(!s.contains(s.hash_v4(b), 2));
    }

    /// The keyed multiply spreads the address patterns a flood or a client population has
    /// (consecutive hosts, one host per /24, addresses that differ only in high bits) evenly,
    /// under different secrets: no bucket gets many times its share.
    #[test]
    fn ipv4_addresses_spread_over_the_buckets() {
        let buckets = 1usize << 13;
        for seed in [[1u8; 16], [0xa5; 16]] {
            let s = SharedSet::new(buckets * WAYS, 1000, seed);
            for pattern in 0..3 {
                let addr = |i: u32| match pattern {
                    0 => 0x0a00_0000 + i,         // consecutive hosts
                    1 => 0xc000_0001 + (i << 8),  // one host per /24
                    _ => 0x0000_0101 | (i << 17), // only high bits differ
                };
                let mut load = vec![0u32; buckets];
                let n = 4 * buckets as u32;
                for i in 0..n {
                    load[s.hash_v4(addr(i)).bucket] += 1;
                }
                let max = load.iter().copied().max().unwrap_or(0);
                assert!(max <= 24, "fullest bucket {max} against a mean of 4");
            }
        }
    }

    #[test]
    fn capacity_rounds_up_to_whole_buckets() {
        assert_eq!(SharedSet::new(0, 1, [0; 16]).capacity(), WAYS);
        assert_eq!(SharedSet::new(5, 1, [0; 16]).capacity(), 2 * WAYS);
        assert_eq!(SharedSet::new(1000, 1, [0; 16]).capacity(), 1024);
    }

    #[test]
    fn insert_contains_and_sliding_expiry() {
        let s = SharedSet::new(64, 160, [1; 16]);
        let x = s.hash(&k(1));
        assert!(!s.contains(x, 0));
        assert_eq!(s.insert(x, 10), Inserted::New);
        assert!(s.contains(x, 169));
        // The hit at 169 moved the deadline to 329.
        assert!(s.contains(x, 328));
        // A hit within 1/16 TTL (10 ticks) of the last write does not write.
        assert!(s.contains(x, 330));
        assert!(!s.contains(x, 600));
        assert_eq!(s.insert(x, 700), Inserted::New, "expired slot reused");
        assert_eq!(s.insert(x, 701), Inserted::Refreshed);
        assert_eq!(s.occupied(), 1);
    }

    #[test]
    fn full_bucket_evicts_least_recently_seen() {
        // One bucket: every key shares it.
        let s = SharedSet::new(WAYS, 1000, [3; 16]);
        let keys: Vec<Hashed> = (0..5).map(|i| s.hash(&k(i))).collect();
        for (i, &h) in keys.iter().take(WAYS).enumerate() {
            assert_eq!(s.insert(h, i as u64 * 100), Inserted::New);
        }
        // Touch key 0 so key 1 becomes the least recently seen.
        assert!(s.contains(keys[0], 500));
        assert_eq!(s.insert(keys[4], 600), Inserted::Evicted);
        assert!(!s.contains(keys[1], 601));
        for i in [0, 2, 3, 4] {
            assert!(s.contains(keys[i], 601), "{i} should have stayed");
        }
        assert_eq!(s.occupied(), WAYS);
    }

    #[test]
    fn concurrent_inserts_are_all_found_by_every_thread() {
        // Four threads insert disjoint keys into a table with room for all of them; afterwards
        // every thread finds every key: an authentication made by one worker holds on all.
        let s = Arc::new(SharedSet::new(1 << 14, u64::MAX / 4, [7; 16]));
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..256u32 {
                        let h = s.hash(&k(t * 1000 + i));
                        assert_ne!(s.insert(h, 1), Inserted::Contended);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("inserter");
        }
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    (0..4u32)
                        .flat_map(|t| (0..256u32).map(move |i| t * 1000 + i))
                        .filter(|&n| !s.contains(s.hash(&k(n)), 2))
                        .count()
                })
            })
            .collect();
        for r in readers {
            let missing = r.join().expect("reader");
            // 1024 keys over 4096 four-way buckets: an overflow (five keys in one bucket) has
            // a chance of about 2e-6 per bucket, so every key must be there for every thread.
            assert_eq!(missing, 0, "keys missing");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Threads authenticating random sources at once, in a table with room for all of
        /// them: every authentication is found afterwards by every thread (none lost).
        #[test]
        fn concurrent_authentications_are_never_lost(
            threads in 2usize..=4,
            keys in proptest::collection::hash_set(any::<u32>(), 1..400),
        ) {
            let s = Arc::new(SharedSet::new(1 << 16, u64::MAX / 4, [11; 16]));
            let keys: Arc<Vec<u32>> = Arc::new(keys.into_iter().collect());
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (s, keys) = (Arc::clone(&s), Arc::clone(&keys));
                    std::thread::spawn(move || {
                        // Every thread inserts every key, in its own order: the races that matter.
                        for i in 0..keys.len() {
                            let n = keys[(i + t * 7) % keys.len()];
                            assert_ne!(s.insert(s.hash(&k(n)), 1), Inserted::Contended);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("inserter");
            }
            for &n in keys.iter() {
                prop_assert!(s.contains(s.hash(&k(n)), 2), "{} lost", n);
            }
        }
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity_and_recent_insert_is_found(
            cap in 1usize..64, ops in proptest::collection::vec((any::<u32>(), 0u64..50), 1..400)) {
            let s = SharedSet::new(cap, 1000, [5; 16]);
            let mut now = 0;
            for (n, dt) in ops {
                now += dt;
                let h = s.hash(&k(n));
                prop_assert_ne!(s.insert(h, now), Inserted::Contended);
                prop_assert!(s.contains(h, now));
                prop_assert!(s.occupied() <= s.capacity());
            }
        }
    }
}
